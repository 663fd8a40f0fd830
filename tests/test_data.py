"""Datasets from SPEC strings, image folders, batch transforms and the loader."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from alexnet import UserError
from alexnet.data.base import FolderDataset, InMemoryDataset
from alexnet.data.datasets import DataSpec, load_dataset
from alexnet.data.loader import BatchLoader
from alexnet.data.transforms import EvalTransform, TrainAugment, center_crop, eval_batch, match_channels, random_crop

from .conftest import CLASSES, make_folder


def test_spec_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALEXNET_DATA_ROOT", "/data")
    assert DataSpec.parse("mnist") == DataSpec("mnist", "/data")
    assert DataSpec.parse("mnist:../shared/data") == DataSpec("mnist", "../shared/data")
    assert DataSpec.parse("cifar10:/x") == DataSpec("cifar10", "/x")
    assert DataSpec.parse("/some/folder") == DataSpec("folder", "/some/folder")


def test_folder_loads_in_memory(tiny_folder: Path) -> None:
    ds = load_dataset(str(tiny_folder), "train", image_size=32, workers=0)
    assert isinstance(ds, InMemoryDataset)
    assert ds.classes == CLASSES and len(ds) == 180
    assert ds.images.shape == (180, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert torch.bincount(ds.labels).tolist() == [60, 60, 60]
    val = load_dataset(str(tiny_folder), "val", image_size=32, workers=0)
    assert len(val) == 60


def test_folder_streams_when_over_the_cache_limit(tiny_folder: Path) -> None:
    ds = load_dataset(str(tiny_folder), "train", image_size=24, workers=0, cache_limit_bytes=1000)
    assert isinstance(ds, FolderDataset)
    x, y = ds[0]
    assert x.shape == (3, 24, 24) and y == 0
    batches = list(BatchLoader(ds, 50, workers=0))
    assert sum(len(b[1]) for b in batches) == 180


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        load_dataset(str(tmp_path / "missing"))
    make_folder(tmp_path / "a", {"train": 2, "val": 2})
    (tmp_path / "a" / "val" / "red").rename(tmp_path / "a" / "val" / "rouge")
    with pytest.raises(UserError, match="class folders differ"):
        load_dataset(str(tmp_path / "a"), "val")
    make_folder(tmp_path / "b", {"train": 2})
    (tmp_path / "b" / "train" / "empty").mkdir()
    (tmp_path / "b" / "train" / "empty" / ".DS_Store").write_text("x")
    with pytest.raises(UserError, match="without any image"):
        load_dataset(str(tmp_path / "b"))


def test_folder_skips_unreadable_files_and_stray_files(tmp_path: Path) -> None:
    root = make_folder(tmp_path, {"train": 5, "val": 2})
    (root / "train" / "red" / "broken.jpg").write_text("not a jpeg")
    (root / "train" / "red" / ".DS_Store").write_text("x")
    (root / "train" / "red" / "notes.txt").write_text("x")
    nested = root / "train" / "blue" / "sub dir ü"
    nested.mkdir()
    (root / "train" / "blue" / "0000.png").rename(nested / "moved 'quoted'.png")
    ds = load_dataset(str(root), "train", image_size=32, workers=0)
    assert len(ds) == 15  # the broken file is skipped, the nested one found


def test_archive_is_extracted_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tarfile

    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "cache"))
    root = make_folder(tmp_path / "src" / "tree", {"train": 2, "test": 2})
    with tarfile.open(tmp_path / "tree.tar.gz", "w:gz") as t:
        t.add(root, arcname="tree")
    ds = load_dataset(str(tmp_path / "tree.tar.gz"), "val", image_size=32, workers=0)
    assert len(ds) == 6
    assert len(list((tmp_path / "cache" / "extracted").iterdir())) == 1


def test_random_crop_and_flip_statistics() -> None:
    # each image holds its column index, so a crop's first column is its x offset
    n, size, crop = 4000, 12, 8
    cols = torch.arange(size, dtype=torch.uint8).expand(n, 1, size, size).clone()
    g = torch.Generator().manual_seed(0)
    out = random_crop(cols, crop, generator=g)
    assert out.shape == (n, 1, crop, crop)
    offsets = out[:, 0, 0, 0].long()
    counts = torch.bincount(offsets, minlength=size - crop + 1)
    assert counts.numel() == size - crop + 1 and counts.min() > 0.8 * n / 5  # all 5 offsets, ~uniform
    assert torch.all(out[:, 0, 0, :] == offsets[:, None] + torch.arange(crop))  # contiguous windows
    aug = TrainAugment(random_crop=True, flip=True)
    t = EvalTransform(size, crop, 0, 1, (0.0,), (1.0,))
    y = aug(cols, t, torch.Generator().manual_seed(1))
    flipped = (y[:, 0, 0, 0] > y[:, 0, 0, -1]).float().mean().item()
    assert 0.45 < flipped < 0.55


def test_translate_pads_with_zeros() -> None:
    x = torch.full((500, 3, 8, 8), 200, dtype=torch.uint8)
    out = random_crop(x, 8, translate=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and (out == 0).any() and (out == 200).any()


def test_eval_transform_centre_crop_pad_channels_and_normalise() -> None:
    x = torch.arange(36, dtype=torch.uint8).view(1, 1, 6, 6)
    assert center_crop(x, 2).flatten().tolist() == [14, 15, 20, 21]
    t = EvalTransform(image_size=6, crop_size=4, pad=2, channels=3, mean=(10.0, 10.0, 10.0), std=(2.0, 2.0, 2.0))
    y = eval_batch(x, t)
    assert y.shape == (1, 3, 8, 8)
    assert y[0, 0, 0, 0].item() == -5.0  # padded zero, normalised
    assert y[0, 1, 2, 2].item() == (7 - 10) / 2
    rgb = torch.tensor([[[[255]], [[0]], [[0]]]], dtype=torch.uint8)
    assert match_channels(rgb, 1).item() == 76  # BT.601 luma of pure red


def test_loader_order_depends_on_seed_and_epoch_only() -> None:
    ds = InMemoryDataset(torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10), ["a"])
    a = BatchLoader(ds, 4, shuffle=True, seed=3)
    b = BatchLoader(ds, 4, shuffle=True, seed=3)
    a.set_epoch(2), b.set_epoch(2)
    assert [y.tolist() for _, y in a] == [y.tolist() for _, y in b]
    b.set_epoch(3)
    assert [y.tolist() for _, y in a] != [y.tolist() for _, y in b]
    assert sorted(sum((y.tolist() for _, y in a), [])) == list(range(10))
    assert len(a) == 3


def _correlated_images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(200, 3, 8, 8, generator=g) * 255).to(torch.uint8)
    images[:, 1] = images[:, 0] // 2 + images[:, 1] // 2  # correlated channels
    return images


def test_pca_lighting_per_component_std_is_coefficient_times_sqrt_lambda() -> None:
    """cuda-convnet2's form: along each eigenvector p_i the shift has std = coefficient x sqrt(lambda_i)
    grey levels, lambda_i the eigenvalue of the 0-255 RGB covariance; checked over 40,000 draws
    within sampling error (the std of a sample std is about std / sqrt(2n): 0.35%; allowed 2%)."""
    from alexnet.data.transforms import pca_lighting, rgb_pca

    images = _correlated_images()
    eigval, eigvec = rgb_pca(images)
    cov255 = torch.cov(images.permute(1, 0, 2, 3).reshape(3, -1).double(), correction=0)
    lam255 = torch.linalg.eigvalsh(cov255).flip(0)  # descending, as rgb_pca's
    assert torch.allclose(eigval.double() * 255**2, lam255, rtol=1e-4)
    for coeff in (0.1, 0.5):
        shift = pca_lighting(
            torch.zeros(40000, 3, 1, 1), eigval, eigvec, std=coeff, generator=torch.Generator().manual_seed(1)
        )[:, :, 0, 0].double()
        along = shift @ eigvec.double()  # the shift's coordinates along p_1, p_2, p_3
        want = coeff * lam255.sqrt()
        assert torch.allclose(along.std(0), want, rtol=0.02), (along.std(0), want)
        assert abs(torch.corrcoef(along.T)[0, 1].item()) < 0.03  # independent components
    # one shift per image: every pixel of an image moves by the same colour
    y = pca_lighting(torch.zeros(4, 3, 5, 5), eigval, eigvec, generator=torch.Generator().manual_seed(2))
    assert torch.all(y == y[:, :, :1, :1])


def test_pca_lighting_fb_resnet_form_scales_by_the_eigenvalue() -> None:
    """fb.resnet.torch's convention, kept as an option: shift covariance 255^2 (std x lambda)^2 along p_i
    with lambda of pixels in [0, 1]."""
    from alexnet.data.transforms import pca_lighting, rgb_pca

    eigval, eigvec = rgb_pca(_correlated_images())
    shift = (
        pca_lighting(
            torch.zeros(40000, 3, 1, 1),
            eigval,
            eigvec,
            std=0.1,
            generator=torch.Generator().manual_seed(1),
            form="fb.resnet",
        )[:, :, 0, 0]
        / 255.0
    )
    expect = eigvec @ torch.diag((0.1 * eigval) ** 2) @ eigvec.T
    measured = torch.cov(shift.T.double(), correction=0).float()
    assert torch.allclose(measured, expect, rtol=0.05, atol=0.02 * expect.abs().max().item())


def test_cuda_convnet_form_scales_the_centred_batch_by_one_over_one_plus_coefficient() -> None:
    from alexnet.data.transforms import EvalTransform, TrainAugment, rgb_pca

    images = _correlated_images()
    eigval, eigvec = rgb_pca(images)
    t = EvalTransform(8, 8, 0, 3, (100.0, 110.0, 120.0), (1.0, 1.0, 1.0))
    x = images[:16]
    plain = TrainAugment(False, 0, False)(x, t)
    zero = TrainAugment(False, 0, False, 0.3, "cuda-convnet", eigval, eigvec)
    out = zero(x, t, torch.Generator().manual_seed(3))
    noise = out * 1.3 - plain  # undo the scaling: what is left is the per-image colour shift
    assert torch.allclose(noise, noise[:, :, :1, :1].expand_as(noise), atol=1e-3)
    fb = TrainAugment(False, 0, False, 0.3, "fb.resnet", eigval, eigvec)(x, t, torch.Generator().manual_seed(3))
    assert torch.allclose(fb - plain, (fb - plain)[:, :, :1, :1].expand_as(fb), atol=1e-3)  # no rescaling


def test_ten_crop_geometry() -> None:
    from alexnet.data.transforms import ten_crop

    x = torch.arange(2 * 3 * 6 * 6).view(2, 3, 6, 6)
    out = ten_crop(x, 4)
    assert out.shape == (2, 10, 3, 4, 4)
    assert torch.equal(out[:, 0], x[..., :4, :4]) and torch.equal(out[:, 1], x[..., :4, 2:])
    assert torch.equal(out[:, 2], x[..., 2:, :4]) and torch.equal(out[:, 3], x[..., 2:, 2:])
    assert torch.equal(out[:, 4], x[..., 1:5, 1:5])
    for i in range(5):
        assert torch.equal(out[:, 5 + i], out[:, i].flip(-1))
    t = EvalTransform(6, 4, 0, 3, (0.0,) * 3, (1.0,) * 3)
    assert eval_batch(x.to(torch.uint8), t, ten=True).shape == (20, 3, 4, 4)


def test_ten_crop_evaluation_averages_softmax(trained_run: Path, tiny_folder: Path) -> None:
    import alexnet

    clf = alexnet.load(trained_run)
    centre = clf.evaluate(str(tiny_folder), progress=False)
    ten = clf.evaluate(str(tiny_folder), progress=False, ten_crop=True)
    assert ten.n == centre.n == 60 and 0 <= ten.top1_error <= 1 and ten.loss != centre.loss


def test_ten_crop_averages_probabilities_not_logits() -> None:
    """Two of the ten patches (the top-left one and its mirror image) say class 0 with huge logits,
    the other eight say class 1 mildly: the mean of the logits picks 0, the mean of the softmax
    (the paper's) picks 1. So does a wrong implementation fail here."""
    from torch import nn

    from alexnet.data.loader import BatchLoader
    from alexnet.data.transforms import EvalTransform
    from alexnet.engine.evaluation import evaluate_model

    class BrightSpot(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            m = (x.flatten(1).amax(1) > 0.5).float()  # the patch holds the bright corner
            return torch.stack([20 * m, 1 - m], 1)

    img = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    img[0, 0, :2, :2] = 255  # only in the top-left 4x4 patch (and its reflection)
    ds = InMemoryDataset(img, torch.tensor([1]), ["a", "b"])
    t = EvalTransform(8, 4, 0, 1, (0.0,), (255.0,))
    res = evaluate_model(BrightSpot(), BatchLoader(ds, 4, workers=0), t, ["a", "b"], ten_crop=True)
    assert res.top1_error == 0.0
    # the mean log-probability: log((8 * softmax(0, 1)[1] + 2 * ~0) / 10)
    p1 = (8 * torch.softmax(torch.tensor([0.0, 1.0]), 0)[1] + 2 * torch.softmax(torch.tensor([20.0, 0.0]), 0)[1]) / 10
    assert res.loss == pytest.approx(-math.log(float(p1)), rel=1e-5)


def test_cpu_and_accelerator_crop_paths_agree() -> None:
    from alexnet.data.transforms import _crop_gather, _crop_loop, _draw

    x = torch.randint(0, 255, (16, 3, 20, 20), dtype=torch.uint8)
    oy, ox, fl = _draw(16, 20 - 12 + 1, 20 - 12 + 1, torch.Generator().manual_seed(0), x.device, True)
    a, b = _crop_loop(x, 12, oy, ox, fl), _crop_gather(x, 12, oy, ox, fl)
    assert torch.equal(a, b)
    i = int(fl.nonzero()[0])
    assert torch.equal(a[i], x[i, :, oy[i] : oy[i] + 12, ox[i] : ox[i] + 12].flip(-1))


def test_loader_shards_an_epoch_between_processes() -> None:
    ds = InMemoryDataset(torch.zeros(11, 1, 2, 2, dtype=torch.uint8), torch.arange(11), ["a"])
    shards = []
    for rank in range(3):
        ld = BatchLoader(ds, 2, shuffle=True, seed=5, rank=rank, world_size=3)
        ld.set_epoch(4)
        shards.append(sum((y.tolist() for _, y in ld), []))
        assert len(shards[-1]) == ld.num_images == 4 and len(ld) == 2
    flat = sum(shards, [])
    assert sorted(set(flat)) == list(range(11)) and len(flat) == 12  # one index repeated as padding
    single = BatchLoader(ds, 11, shuffle=True, seed=5)
    single.set_epoch(4)
    order = single.order().tolist()
    assert shards[0] == order[0::3] and shards[1] == order[1::3]
    again = BatchLoader(ds, 2, shuffle=True, seed=5, rank=1, world_size=3)
    again.set_epoch(5)
    assert sum((y.tolist() for _, y in again), []) != shards[1]  # reshuffled per epoch


@pytest.mark.parametrize("threads,depth,start", [(1, 1, 0), (3, 4, 0), (2, 3, 5)])
def test_prefetcher_yields_the_loaders_batches_in_order(threads: int, depth: int, start: int) -> None:
    """Background gathers into a ring of reused buffers change nothing: the same batches, the same
    order, from a resumed position too, for NCHW tensors and for NHWC (packed) storage."""
    from alexnet.data.pipeline import Prefetcher

    nchw = torch.randint(0, 255, (53, 3, 6, 6), dtype=torch.uint8)
    nhwc = nchw.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # what a packed dataset holds
    for images in (nchw, nhwc):
        ds = InMemoryDataset(images, torch.arange(53) % 7, ["a"])
        loader = BatchLoader(ds, 8, shuffle=True, seed=3, workers=0)
        loader.set_epoch(2, start)
        expect = [(x.clone(), y.clone()) for x, y in loader]
        pre = Prefetcher(loader, torch.device("cpu"), depth=depth, threads=threads)
        got = [(x.clone(), y.clone()) for x, y in pre]  # each batch copied before the next is asked for
        pre.close()
        assert len(got) == len(expect) == len(loader) - start
        for (a, b), (c, d) in zip(got, expect):
            assert torch.equal(a, c) and torch.equal(b, d)


def test_lenet5_input_range_is_the_papers(tiny_folder) -> None:
    """LeCun et al. 1998: background -0.1, foreground 1.175 (``normalize = "lecun"``, the recipe's),
    the 2-pixel padding of the 28x28 digits at the background's level."""
    from alexnet import TrainConfig
    from alexnet.data.transforms import eval_batch
    from alexnet.engine.data import build_data

    cfg = TrainConfig.from_recipe("lenet5_mnist", data=str(tiny_folder), workers=0)
    assert cfg.normalize == "lecun"
    *_, t = build_data(cfg)
    x = torch.zeros(2, 1, 28, 28, dtype=torch.uint8)
    x[1] = 255
    y = eval_batch(x, t)
    assert y.shape == (2, 1, 32, 32)
    assert torch.allclose(y[0], torch.full_like(y[0], -0.1))
    assert torch.allclose(y[1, :, 2:-2, 2:-2], torch.full((1, 28, 28), 1.175))
    assert torch.allclose(y[1, :, :2], torch.full((1, 2, 32), -0.1))


def test_pca_noise_leaves_the_crops_and_flips_of_its_arm_unchanged(
    tiny_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two training runs of one seed that differ only in the PCA colour noise see the same crops and
    flips, batch after batch (the noise has its own generator; it once drew from the crops' one, so
    the arms' crops parted after the first batch). Checked through training itself: every crop
    offset and flip that ``random_crop`` drew is recorded."""
    from alexnet import TrainConfig
    from alexnet.data import transforms
    from alexnet.training import train

    drawn: list[list[torch.Tensor]] = []
    real_draw = transforms._draw

    def record(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = real_draw(*args, **kwargs)
        drawn[-1].append(torch.cat([t.long().flatten() for t in out if t is not None]))
        return out

    monkeypatch.setattr(transforms, "_draw", record)
    for i, lighting in enumerate((0.0, 0.1)):
        drawn.append([])
        cfg = TrainConfig(
            model="cifar_18pct",
            data=str(tiny_folder),
            out=str(tmp_path / f"r{i}"),
            epochs=2,
            batch_size=16,
            image_size=32,
            crop_size=24,
            random_crop=True,
            flip=True,
            pca_lighting=lighting,
            model_options={"input_size": 24, "lrn": "none"},
            workers=0,
            eval_every=100,
        )
        train(cfg, progress=False, log=lambda s: None)
    assert len(drawn[0]) == len(drawn[1]) >= 8
    for a, b in zip(*drawn):
        assert torch.equal(a, b)


def test_affine_distortions_draw_per_image_and_are_off_at_zero() -> None:
    from alexnet.data.transforms import random_affine

    x = torch.zeros(6, 1, 32, 32)
    x[:, :, 8:24, 14:18] = 255.0  # a vertical bar
    same = random_affine(x, 0.0, 0.0, 0.0, torch.Generator().manual_seed(0))
    assert torch.allclose(same, x, atol=1e-3)  # no distortion: the identity (bilinear at the pixel centres)
    y = random_affine(x, 0.1, 0.1, 0.15, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == torch.float32
    assert len({round(float(v), 3) for v in y.sum((1, 2, 3))}) == 6  # one draw per image
    again = random_affine(x, 0.1, 0.1, 0.15, torch.Generator().manual_seed(0))
    assert torch.equal(y, again)  # from the generator only
    for key in ("affine_scale", "affine_squeeze", "affine_shear"):
        from alexnet import TrainConfig

        with pytest.raises(UserError, match=key.replace("_", "-")):
            TrainConfig(**{key: 1.5}).validate()


@pytest.mark.parametrize("random,translate", [(True, 0), (True, 3), (False, 0)])
def test_the_mean_image_is_cropped_with_the_images_bit_for_bit(random: bool, translate: int) -> None:
    """The paper recipe subtracts a per-pixel mean image: the uint8 images and the mean image are cropped
    at the same offsets first, then subtracted (the float batch is the crop's size, not the stored
    image's), which is bit for bit what subtracting first and cropping after gave."""
    from alexnet.data.transforms import crop_view, normalize, random_flip, ten_crop

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 3, 40, 40), dtype=torch.uint8, generator=g)
    mean = torch.rand(3, 40, 40, generator=g) * 255
    t = EvalTransform(40, 32, 0, 3, (0.0,) * 3, (60.0,) * 3, mean_image=mean)
    aug = TrainAugment(random_crop=random, translate=translate, flip=True)
    got = aug(x, t, torch.Generator().manual_seed(7))
    diff = x.float() - mean  # the formula as it was: the whole image, then the crop
    gen = torch.Generator().manual_seed(7)
    if random:
        want = random_crop(diff, 32, translate, gen, flip=True)
    else:
        want = random_flip(center_crop(diff, 32), gen)
    assert torch.equal(got, normalize(want, t.mean, t.std))
    # evaluation: the centre crop, and each of the ten patches, as ten_crop of the difference gives them
    assert torch.equal(eval_batch(x, t), normalize(center_crop(diff, 32), t.mean, t.std))
    ten = ten_crop(diff, 32)
    for view in range(10):
        assert torch.equal(eval_batch(x, t, view=view), normalize(ten[:, view], t.mean, t.std)), view
        assert torch.equal(crop_view(x, 32, view), ten_crop(x, 32)[:, view])


@pytest.mark.parametrize("how", ["bilinear", "bicubic", "nearest"])
def test_stored_squares_resize_as_torchvision_resizes_tensors(how: str) -> None:
    """evaluate --resize-size on stored squares (packs, CIFAR-10, MNIST) resizes on the device:
    torchvision's resize of the float images with the same filter (antialiased but for nearest), rounded.
    (Its uint8 path rounds between the two separable passes, up to 12 grey levels away with bicubic's
    overshoot on noise.)"""
    from torchvision.transforms import v2

    from alexnet.data.transforms import resize_batch

    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mode = {"bilinear": v2.InterpolationMode.BILINEAR, "bicubic": v2.InterpolationMode.BICUBIC}.get(
        how, v2.InterpolationMode.NEAREST_EXACT
    )
    for size in (24, 40):
        ref = v2.functional.resize(x.float(), [size, size], interpolation=mode, antialias=how != "nearest")
        got = resize_batch(x, size, how)
        assert got.dtype == torch.uint8 and torch.equal(got, ref.round().clamp(0, 255).to(torch.uint8)), (how, size)
    t = EvalTransform(32, 28, mean_image=torch.rand(3, 32, 32) * 255).resized(40, 32, how)
    assert (t.image_size, t.crop_size, t.interpolation) == (40, 32, how) and t.mean_image is not None
    assert t.mean_image.shape == (3, 40, 40)
