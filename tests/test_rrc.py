"""RandomResizedCrop: the boxes' distribution is torchvision's, their pixels are torchvision's
``resized_crop``, the draws are a function of (seed, epoch, process, batch) alone, and a run that uses
it resumes mid-epoch bitwise."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms.v2 import RandomResizedCrop

from alexnet import TrainConfig, UserError
from alexnet.data.loader import BatchLoader, ResizedCrops
from alexnet.data.transforms import EvalTransform, TrainAugment, _resized_crop_grid, resized_crop_batch, rrc_boxes

from .conftest import make_folder
from .support.resume import assert_resumes_bitwise

stats = pytest.importorskip("scipy.stats")

SIZES = [(256, 256), (375, 500), (500, 333), (256, 1024)]  # square, landscape, portrait, a panorama


def torchvision_boxes(h: int, w: int, n: int, scale: tuple, ratio: tuple) -> np.ndarray:
    torch.manual_seed(0)
    img = torch.empty(3, h, w)
    return np.array([RandomResizedCrop.get_params(img, list(scale), list(ratio)) for _ in range(n)], dtype=float)


def ours(h: int, w: int, n: int, scale: tuple, ratio: tuple) -> np.ndarray:
    g = torch.Generator().manual_seed(1)
    b = rrc_boxes(torch.full((n,), h), torch.full((n,), w), scale, ratio, g)
    return b.numpy().astype(float)


@pytest.mark.parametrize("h,w", SIZES)
@pytest.mark.parametrize("scale,ratio", [((0.08, 1.0), (3 / 4, 4 / 3)), ((0.35, 1.0), (0.5, 2.0))])
def test_the_boxes_are_distributed_as_torchvisions(h: int, w: int, scale: tuple, ratio: tuple) -> None:
    """Two-sample Kolmogorov-Smirnov tests at 1% on the box's area fraction, aspect ratio, and its
    corner's relative position (the seeds are fixed: the test is deterministic)."""
    n = 4000
    ref, got = torchvision_boxes(h, w, n, scale, ratio), ours(h, w, n, scale, ratio)
    for name, f in {
        "area": lambda b: b[:, 2] * b[:, 3] / (h * w),
        "ratio": lambda b: np.log(b[:, 3] / b[:, 2]),
        "top": lambda b: (b[:, 0] + 0.5) / (h - b[:, 2] + 1),
        "left": lambda b: (b[:, 1] + 0.5) / (w - b[:, 3] + 1),
    }.items():
        p = stats.ks_2samp(f(ref), f(got)).pvalue
        assert p > 0.01, (name, h, w, p)
    for b in (ref, got):  # every box inside the image
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
        assert (b[:, 0] + b[:, 2] <= h).all() and (b[:, 1] + b[:, 3] <= w).all()


@pytest.mark.parametrize("h,w", [(10, 1000), (1000, 10), (100, 60)])
def test_no_try_fits_the_fallback_is_torchvisions(h: int, w: int) -> None:
    """Strips (and a 0.6 ratio) where no try can fit: every box is the fallback, the whole image cut to
    the nearest ratio in range and centred, exactly torchvision's."""
    scale, ratio = (0.95, 1.0), (1.0, 4 / 3) if h == 100 else (3 / 4, 4 / 3)
    ref = {tuple(r) for r in torchvision_boxes(h, w, 100, scale, ratio)}
    got = {tuple(r) for r in ours(h, w, 100, scale, ratio)}
    assert len(ref) == 1 and got == ref, (ref, got)


def test_the_pixels_are_torchvisions_resized_crop() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (40, 3, 256, 256), dtype=torch.uint8, generator=g)
    x = x.contiguous(memory_format=torch.channels_last)  # packed datasets come channels-last
    boxes = rrc_boxes(torch.full((40,), 256), torch.full((40,), 256), generator=g)
    got = resized_crop_batch(x, boxes, 224)
    assert got.shape == (40, 3, 224, 224) and got.dtype == torch.uint8
    ref = torch.stack([TF.resized_crop(x[i], *boxes[i].tolist(), [224, 224], antialias=True) for i in range(40)])
    assert (got.int() - ref.int()).abs().max() <= 1


def test_the_accelerator_path_agrees_with_the_cpu_one() -> None:
    """The batched grid_sample path (CUDA), run here on the CPU: the same pixels (within rounding) for
    boxes up to the output size; for larger boxes (downscaling, no antialiasing) close on a photo-like
    (smooth) image."""
    g = torch.Generator().manual_seed(3)
    noise = torch.rand(16, 3, 32, 32, generator=g) * 255
    x = torch.nn.functional.interpolate(noise, size=(256, 256), mode="bicubic").clamp(0, 255).round().to(torch.uint8)
    boxes = rrc_boxes(torch.full((16,), 256), torch.full((16,), 256), generator=g)
    cpu, grid = resized_crop_batch(x, boxes, 224).int(), _resized_crop_grid(x, boxes, 224).int()
    small = (boxes[:, 2] <= 224) & (boxes[:, 3] <= 224)
    assert small.any() and (~small).any()
    assert (cpu[small] - grid[small]).abs().max() <= 1
    assert (cpu[~small] - grid[~small]).abs().float().mean() < 1.0


def test_the_boxes_depend_on_seed_epoch_process_and_batch_only(tmp_path: Path) -> None:
    from alexnet.data.base import InMemoryDataset

    ds = InMemoryDataset(torch.zeros(50, 3, 8, 8, dtype=torch.uint8), torch.zeros(50), ["a"])

    def loader(rank: int = 0, seed: int = 0) -> BatchLoader:
        bl = BatchLoader(ds, 8, shuffle=True, seed=seed, rank=rank, world_size=2)
        bl.crops = ResizedCrops()
        return bl

    a, b = loader(), loader()
    a.set_epoch(3)
    b.set_epoch(3, start_batch=2)  # a run resumed mid-epoch: the same boxes, no saved state
    assert torch.equal(a.boxes_for(2, 256), b.boxes_for(2, 256))
    assert not torch.equal(a.boxes_for(2, 256), a.boxes_for(1, 256))
    other = loader(rank=1)
    other.set_epoch(3)
    assert not torch.equal(a.boxes_for(2, 256), other.boxes_for(2, 256))
    b.set_epoch(4)
    assert not torch.equal(a.boxes_for(2, 256), b.boxes_for(2, 256))
    assert len(a.boxes_for(3, 256)) == 1  # the short last batch: 25 images of this process, 8 a batch


def test_the_augmentation_crops_then_flips() -> None:
    t = EvalTransform(image_size=64, crop_size=48)
    aug = TrainAugment(random_resized_crop=True, flip=False)
    x = torch.arange(64 * 64, dtype=torch.float32).reshape(1, 1, 64, 64).expand(2, 3, 64, 64).to(torch.uint8)
    boxes = torch.tensor([[0, 0, 64, 64], [10, 20, 30, 40]])
    y = aug(x, t, boxes=boxes)
    want = resized_crop_batch(x, boxes, 48).float()
    assert torch.equal(y, want)  # mean 0, std 1: the crop itself
    with pytest.raises(ValueError, match="no boxes"):
        aug(x, t)
    t_mean = EvalTransform(image_size=64, crop_size=48, mean_image=torch.zeros(3, 64, 64))
    with pytest.raises(ValueError, match="mean image"):
        aug(x, t_mean, boxes=boxes)


def test_config_and_flags() -> None:
    from alexnet.cli import main

    cfg = TrainConfig(random_resized_crop=True, rrc_scale=[0.25, 1], rrc_ratio=[0.5, 2]).validate()
    assert cfg.rrc_scale == [0.25, 1.0]
    for bad in ([0.5], [0.9, 0.1], [0.0, 1.0], [0.1, 1.5], [0.1, math.inf]):
        with pytest.raises(UserError, match="rrc-scale"):
            TrainConfig(rrc_scale=bad).validate()
    with pytest.raises(UserError, match="rrc-ratio"):
        TrainConfig(rrc_ratio=[2.0, 0.5]).validate()
    with pytest.raises(UserError, match="mean image"):
        TrainConfig(random_resized_crop=True, normalize="mean_image").validate()
    with pytest.raises(UserError, match="translate"):
        TrainConfig(random_resized_crop=True, translate=4).validate()
    from alexnet.commands._common import list_literal

    assert list_literal("0.08,1") == [0.08, 1] and list_literal("[0.08, 1.0]") == [0.08, 1.0]
    assert main(["train", "--rrc-scale", "0.5", "--data", "x", "--random-resized-crop"]) == 2


def test_a_run_with_it_resumes_mid_epoch_bitwise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_folder(tmp_path / "data", {"train": 12, "val": 2}, size=40)  # per class: 36 images
    base = dict(
        model="cifar_80sec",
        data=str(data),
        epochs=2,
        batch_size=8,
        workers=0,
        image_size=40,
        crop_size=32,
        random_resized_crop=True,
        rrc_scale=[0.3, 1.0],
        checkpoint_every=2,
        model_options={"init": "torch"},
    )
    assert_resumes_bitwise(base, tmp_path, monkeypatch, stop_at=8)  # the 3rd batch of epoch 2 (5 an epoch)
