"""JPEG shards (``alexnet prepare --format jpeg``): the same images and labels back (also through the
``webdataset`` package), every file the same after any interruption, ``--verify`` finding damage, bad
members skipped in training with their shard and key, training end to end with bitwise resume."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet import TrainConfig, UserError
from alexnet.data.datasets import load_dataset
from alexnet.data.shards import codec
from alexnet.data.shards.format import index_name, member_key, read_index
from alexnet.data.shards.reader import ShardDataset, load_shards
from alexnet.data.shards.writer import prepare_shards, verify

from .conftest import CLASSES, make_folder
from .support.data import packed_bytes, synthetic_jpegs
from .support.resume import assert_resumes_bitwise


def source(root: Path, bad: bool = True, size: int | tuple[int, int] = (48, 36)) -> Path:
    src = make_folder(root, {"train": 14, "val": 3}, size=size)
    if bad:
        for i, name in enumerate(("x.png", "y.jpg")):
            (src / "train" / CLASSES[i] / name).write_bytes(b"not an image" * (i + 1))
    return src


def prep(src: Path, dst: Path, **kw: Any) -> Any:
    return prepare_shards(src, dst, **{"size": 32, "shard_size": 10, "workers": 0, "progress": False, **kw})


def by_file(dst: Path, split: str = "train") -> dict[str, tuple[np.ndarray, int]]:
    """Every stored image (as decoded) and label, by its source file."""
    ds = load_shards(dst, split)
    files = json.loads((dst / f"{split}_files.json").read_text())
    out = {}
    for i in range(len(ds)):
        x, y = ds[i]
        assert x is not None, y
        out[files[int(ds.index[i, 1])][0]] = (x.numpy().transpose(1, 2, 0), y)
    return out


@pytest.mark.parametrize("shape", ["square", "shorter"])
def test_round_trip_keeps_every_image_once_with_its_label(tmp_path: Path, shape: str) -> None:
    src = source(tmp_path / "src")
    summary = prep(src, tmp_path / "jp", shape=shape)
    assert summary.written == {"train": 42, "val": 9}
    assert sorted(p for p, _ in summary.skipped["train"]) == [f"train/{CLASSES[0]}/x.png", f"train/{CLASSES[1]}/y.jpg"]
    got = by_file(tmp_path / "jp")
    assert len(got) == 42
    for rel, (pixels, label) in got.items():
        assert label == CLASSES.index(Path(rel).parent.name)
        img = Image.open(src / rel).convert("RGB")  # 48x36: shorter side 36 -> 32
        if shape == "square":
            img = img.resize((32, 32), Image.Resampling.BILINEAR, box=(6, 0, 42, 36))
        else:
            img = img.resize((43, 32), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=95, subsampling=2)  # Pillow's own resize and encoding, decoded
        want = codec.centre_square(np.asarray(Image.open(buf).convert("RGB")), 32)
        assert pixels.shape == (32, 32, 3) and np.array_equal(pixels, want), rel
    ds = load_shards(tmp_path / "jp")
    h, w = ds.image_sizes(torch.arange(len(ds)))
    assert set(h.tolist()) == {32} and set(w.tolist()) == ({32} if shape == "square" else {43})
    # a seeded order: no shard holds one class
    for k in range(4):
        labels = set(ds.index[ds.index[:, 0] == k, 4].tolist())
        assert len(labels) > 1, k


def test_webdataset_reads_the_same_images_and_labels(tmp_path: Path) -> None:
    wds = pytest.importorskip("webdataset")
    dst = tmp_path / "jp"
    prep(source(tmp_path / "src"), dst)
    ds = load_shards(dst)
    ours = {member_key(int(r[1])): (ds[i][0].numpy().transpose(1, 2, 0), ds[i][1]) for i, r in enumerate(ds.index)}
    urls = [str(dst / s["name"]) for s in ds.meta["splits"]["train"]["shards"]]
    theirs = {
        k: (img, int(c))
        for k, img, c in wds.WebDataset(urls, shardshuffle=False).decode("rgb8").to_tuple("__key__", "jpg", "cls")
    }
    assert theirs.keys() == ours.keys()
    for k, (img, label) in ours.items():
        assert label == theirs[k][1] and np.array_equal(img, theirs[k][0]), k


def test_the_two_decoders_give_the_same_pixels(tmp_path: Path) -> None:
    if codec.simplejpeg is None:
        pytest.skip("simplejpeg is not installed (the jpeg extra); Pillow decodes alone")
    rng = np.random.default_rng(0)
    for _ in range(5):
        img = Image.fromarray(rng.integers(0, 255, (37, 53, 3), dtype=np.uint8))
        data = codec.encode(img, 95)
        pil = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert np.array_equal(codec.simplejpeg.decode_jpeg(data, colorspace="RGB"), pil)


def test_two_prepares_write_the_same_bytes_and_a_rerun_is_a_no_op(tmp_path: Path) -> None:
    src = source(tmp_path / "src")
    prep(src, tmp_path / "a")
    prep(src, tmp_path / "b", workers=2)
    assert packed_bytes(tmp_path / "a") == packed_bytes(tmp_path / "b")
    assert prep(src, tmp_path / "a").already_complete
    with pytest.raises(UserError, match="--quality 95 \\(not 90\\)"):
        prep(src, tmp_path / "a", quality=90)


def test_a_prepare_killed_anywhere_converges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Crashes after the first shard, between a shard's tar and its rename, inside the statistics, and
    with a recorded shard deleted: every rerun ends with every file (dataset.json included, less its
    timing) byte for byte an uninterrupted prepare's."""
    from alexnet.data.shards import writer

    src = source(tmp_path / "src")
    prep(src, tmp_path / "straight")
    want = packed_bytes(tmp_path / "straight")

    class Killed(BaseException):
        pass

    real_write, real_replace, real_stats = writer._write_shard, writer.os.replace, writer._statistics
    for moment in ("after a shard", "before a rename", "in the statistics"):
        dst = tmp_path / moment.replace(" ", "-")
        calls = {"n": 0}

        def write_shard(*a: Any, moment: str = moment, calls: dict = calls) -> Any:
            calls["n"] += 1
            if moment == "after a shard" and calls["n"] == 3:
                raise Killed
            return real_write(*a)

        def replace(a: Any, b: Any, moment: str = moment, calls: dict = calls) -> None:
            if moment == "before a rename" and str(b).endswith("000002.tar"):
                raise Killed
            real_replace(a, b)

        def statistics(*a: Any) -> Any:
            raise Killed

        monkeypatch.setattr(writer, "_write_shard", write_shard)
        monkeypatch.setattr(writer.os, "replace", replace)
        if moment == "in the statistics":
            monkeypatch.setattr(writer, "_statistics", statistics)
        with pytest.raises(Killed):
            prep(src, dst)
        monkeypatch.setattr(writer, "_write_shard", real_write)
        monkeypatch.setattr(writer.os, "replace", real_replace)
        monkeypatch.setattr(writer, "_statistics", real_stats)
        prep(src, dst)
        assert packed_bytes(dst) == want, moment
    # a recorded shard lost before the end: it (and those after it) are written again
    dst = tmp_path / "lost"
    monkeypatch.setattr(writer, "_statistics", lambda *a: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed):
        prep(src, dst)
    monkeypatch.setattr(writer, "_statistics", real_stats)
    (dst / "train-000001.tar").unlink()
    prep(src, dst)
    assert packed_bytes(dst) == want


def test_verify_finds_each_kind_of_damage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from alexnet.cli import main

    src = source(tmp_path / "src", bad=False)
    dst = tmp_path / "jp"
    prep(src, dst)
    assert verify(dst, progress=False) == []
    assert main(["prepare", "--verify", str(dst)]) == 0
    ds = load_shards(dst)
    shard, key, offset, size = (int(v) for v in ds.index[0, :4])
    name = ds.shards[shard]
    data = bytearray((dst / name).read_bytes())
    data[offset + size // 2] ^= 0xFF  # one flipped byte inside a JPEG
    (dst / name).write_bytes(bytes(data))
    problems = verify(dst, progress=False)
    assert any("sha256" in p and name in p for p in problems), problems
    assert main(["prepare", "--verify", str(dst)]) == 1
    out = capsys.readouterr()
    assert name in out.out and "problem" in out.err
    (dst / ds.shards[1]).write_bytes((dst / ds.shards[1]).read_bytes()[:3000])  # truncated
    (dst / ds.shards[2]).unlink()  # missing
    problems = verify(dst, progress=False)
    assert any(ds.shards[1] in p and "bytes" in p for p in problems), problems
    assert any(p.startswith(ds.shards[1] + ":") and "past the end" in p for p in problems), problems
    assert any(ds.shards[2] in p and "missing" in p for p in problems), problems


def _edit_meta(dst: Path, edit: Any) -> None:
    meta = json.loads((dst / "dataset.json").read_text())
    edit(meta)
    (dst / "dataset.json").write_text(json.dumps(meta))


def test_a_damaged_manifest_or_index_is_one_line_before_training(tmp_path: Path) -> None:
    src = source(tmp_path / "src", bad=False)
    prep(src, tmp_path / "jp")
    cases = {
        "count": lambda m: m["splits"]["train"].__setitem__("count", 41),
        "shard count": lambda m: m["splits"]["train"]["shards"][0].__setitem__("count", 11),
        "name": lambda m: m["splits"]["train"]["shards"][0].__setitem__("name", "../etc/passwd"),
        "sha": lambda m: m["splits"]["train"]["shards"][0].__setitem__("sha256", "x"),
        "shape": lambda m: m.__setitem__("shape", "round"),
        "bytes": lambda m: m["splits"]["train"]["shards"][1].__setitem__("bytes", 100),
    }
    for what, edit in cases.items():
        dst = tmp_path / what.replace(" ", "-")
        dst.mkdir()
        for f in (tmp_path / "jp").iterdir():
            (dst / f.name).write_bytes(f.read_bytes())
        _edit_meta(dst, edit)
        with pytest.raises(UserError) as e:
            load_shards(dst)
        msg = str(e.value)
        assert "\n" not in msg and str(dst) in msg, (what, msg)
    # an index that claims another size than the shorter side: refused at open
    dst = tmp_path / "index"
    dst.mkdir()
    for f in (tmp_path / "jp").iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    rows = read_index(dst, "train-000000.tar", 10).copy()
    rows[3, 4:] = [1, 1]
    rows.astype("<i8").tofile(dst / index_name("train-000000.tar"))
    with pytest.raises(UserError, match="1x1"):
        load_shards(dst)


def _patch_member(dst: Path, i: int, data: bytes, ds: ShardDataset) -> None:
    """Overwrite member i's bytes in place (same length), as a bad disk or a bad copy would."""
    shard, _, offset, size = (int(v) for v in ds.index[i, :4])
    assert len(data) <= size
    raw = bytearray((dst / ds.shards[shard]).read_bytes())
    raw[offset : offset + len(data)] = data
    (dst / ds.shards[shard]).write_bytes(bytes(raw))


def test_bad_members_are_skipped_in_training_with_shard_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from alexnet.training import train

    src = source(tmp_path / "src", bad=False)
    dst = tmp_path / "jp"
    prep(src, dst)
    ds = load_shards(dst)
    # a member whose header says 60000x10, one of garbage, and a shard cut short
    big = io.BytesIO()
    Image.new("RGB", (10, 60000 // 100)).save(big, "JPEG")
    header = bytearray(big.getvalue())
    sof = header.index(b"\xff\xc0")
    header[sof + 5 : sof + 9] = (60000).to_bytes(2, "big") + (10).to_bytes(2, "big")
    _patch_member(dst, 0, bytes(header[: int(ds.index[0, 3])]), ds)
    _patch_member(dst, 1, b"\x00" * 64, ds)
    last = ds.shards[-1]
    (dst / last).write_bytes((dst / last).read_bytes()[:1024])
    bad = {ds.where(0), ds.where(1)} | {ds.where(i) for i in np.flatnonzero(ds.index[:, 0] == len(ds.shards) - 1)}
    assert ds[0][0] is None and "10x60000" in ds[0][1][1]
    cfg = TrainConfig(
        model="cifar_80sec",
        data=str(dst),
        out=str(tmp_path / "run"),
        epochs=1,
        batch_size=8,
        workers=1,
        model_options={"init": "torch"},
    )
    result = train(cfg, progress=False, log=lambda s: None)
    err = capsys.readouterr().err
    skipped = {where for where, _ in result.skipped}
    assert bad <= skipped, bad - skipped
    assert all(w in err for w in bad)


def shard_run(tmp_path: Path, shape: str, **kw: Any) -> dict[str, Any]:
    """A shard set of 56x40 images prepared in ``shape``, and a 2-epoch cifar_80sec run's config on it
    (workers decoding, mid-epoch checkpoints every 2 steps), with ``kw``."""
    dst = tmp_path / "jp"
    prep(source(tmp_path / "src", bad=False, size=(56, 40)), dst, shape=shape)
    base = dict(model="cifar_80sec", data=str(dst), epochs=2, batch_size=8, workers=1, image_size=32)
    return {**base, "checkpoint_every": 2, "model_options": {"init": "torch"}, **kw}


@pytest.mark.parametrize("shape,rrc", [("square", False), ("square", True), ("shorter", True)])
def test_training_from_shards_resumes_mid_epoch_bitwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: str, rrc: bool
) -> None:
    """Worker processes decode (``workers=1``); with ``shorter`` and RandomResizedCrop the boxes go to
    the workers with the indices. A run interrupted after a mid-epoch checkpoint and resumed ends with
    the weights of an uninterrupted one."""
    base = shard_run(tmp_path, shape, crop_size=28 if not rrc else 32, pad=2 if not rrc else 0, random_resized_crop=rrc)
    assert_resumes_bitwise(base, tmp_path, monkeypatch, stop_at=9)  # the 3rd batch of epoch 2 (42 images: 6)


def test_decode_time_crops_are_the_batch_paths(tmp_path: Path) -> None:
    """A ``shorter`` set's worker-side RandomResizedCrop gives the pixels of torchvision's
    ``resized_crop`` of the decoded whole image, for the loader's boxes."""
    import torchvision.transforms.v2.functional as TF

    from alexnet.data.loader import BatchLoader, ResizedCrops

    dst = tmp_path / "jp"
    prep(source(tmp_path / "src", bad=False, size=(56, 40)), dst, shape="shorter")
    ds = load_shards(dst)
    loader = BatchLoader(ds, 8, shuffle=True, seed=3, workers=0)
    loader.crops = ResizedCrops((0.2, 1.0), (3 / 4, 4 / 3), 24)
    loader.set_epoch(1)
    x, _ = next(iter(loader))
    ids, boxes = loader.order()[:8], loader.boxes_for(0, 0)
    assert (boxes[:, 3] > 32).any()  # some boxes use the width beyond the central square
    for j in range(8):
        whole = torch.from_numpy(ds.decode(int(ids[j]))).permute(2, 0, 1)
        want = TF.resized_crop(whole, *boxes[j].tolist(), [24, 24], antialias=True)
        assert (x[j].int() - want.int()).abs().max() <= 1


def test_load_dataset_and_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from alexnet.cli import main

    src = source(tmp_path / "src", bad=False)
    assert main(["prepare", str(src), str(tmp_path / "jp"), "--format", "jpeg", "--size", "32", "--workers", "1"]) == 0
    assert "train: 42 images" in capsys.readouterr().out
    assert len(load_dataset(str(tmp_path / "jp"), "val")) == 9
    assert main(["prepare", str(src), str(tmp_path / "raw"), "--quality", "90"]) == 2
    assert "only with --format jpeg" in capsys.readouterr().err
    assert main(["prepare", "--verify", str(tmp_path / "nothing")]) == 2
    assert main(["prepare", str(src)]) == 2


def test_bench_loader_times_every_form_and_sizes_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``alexnet bench loader`` packs the folder in both forms and both qualities and times each
    pipeline (a smoke run: the figures themselves are a benchmark's, benchmarks/loader.py)."""
    from alexnet.cli import main

    src = synthetic_jpegs(tmp_path / "photos", 24, classes=3)
    args = ["bench", "loader", "--data", str(src), "--batch-size", "8", "--batches", "2", "--repeats", "1"]
    assert main([*args, "--workers", "0", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert set(r["jpeg_sizes"]) == {"square-q95", "square-q90", "shorter-q95", "shorter-q90"}
    sizes = {k: v["bytes_per_image"] for k, v in r["jpeg_sizes"].items()}
    assert sizes["square-q90"] < sizes["square-q95"] < r["raw_bytes_per_image"] == 256 * 256 * 3
    assert sizes["square-q95"] < sizes["shorter-q95"]  # 256x341 against 256x256 of a 500x375 photo
    assert r["raw_imagenet_gb"] == pytest.approx(196_608 * 1_281_167 / 1e9)
    for key in (
        "jpeg_square_images_per_sec",
        "jpeg_shorter_rrc_images_per_sec",
        "jpeg_square_decode_one_core_images_per_sec",
    ):
        assert r[key] > 0
    assert main([*args, "--workers", "0", "--quality", "101"]) == 2
    assert main([*args, "--workers", "-1"]) == 2
    assert main(["bench", "loader", "--data", str(tmp_path / "nothing")]) == 2
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("shape,rrc", [("square", False), ("shorter", True), ("shorter", False)])
def test_decode_gpu_gives_the_workers_batches_and_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: str, rrc: bool
) -> None:
    """--decode gpu (the workers read bytes; the batch is decoded where the step runs): on the CPU the
    decoder is the workers' libjpeg-turbo, so a run trained that way ends with the same weights bit for
    bit, and resumes mid-epoch exactly. (Refused on the CPU for users; allowed here for the test.)"""
    import alexnet.engine.checks as checks
    from alexnet.training import train

    base = shard_run(tmp_path, shape, crop_size=32, random_resized_crop=rrc, val_split=0.2)
    with pytest.raises(UserError, match="--decode gpu needs a CUDA device"):
        train(TrainConfig(**base, decode="gpu", out=str(tmp_path / "refused")), progress=False, log=lambda s: None)
    monkeypatch.setattr(checks, "check_decode_device", lambda cfg, device: None)
    runs = {}
    for decode in ("cpu", "gpu"):
        out = tmp_path / decode
        result = train(TrainConfig(**base, decode=decode, out=str(out)), progress=False, log=lambda s: None)
        runs[decode] = (torch.load(out / "last.pt", weights_only=True)["model"], result.metrics)
    for k, v in runs["cpu"][0].items():
        assert torch.equal(v, runs["gpu"][0][k]), k
    assert [r["val_loss"] for r in runs["cpu"][1]] == [r["val_loss"] for r in runs["gpu"][1]]
    if rrc:
        assert_resumes_bitwise({**base, "decode": "gpu"}, tmp_path / "resume", monkeypatch, stop_at=7)


def test_decode_gpu_skips_a_member_that_does_not_decode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A member whose header is sound but whose data is not: the batch goes on without it and its
    label, and one line names its shard and key; --decode gpu on anything but shards is one line."""
    from alexnet.data.loader import BatchLoader
    from alexnet.data.pipeline import Prefetcher
    from alexnet.engine.checks import decode_on_device

    dst = tmp_path / "jp"
    prep(source(tmp_path / "src", bad=False), dst)
    ds = load_shards(dst)
    data = bytearray(ds.read(2))
    dht = data.index(b"\xff\xc4")  # a Huffman table: the header (its size) reads, the image does not decode
    data[dht + 5 : dht + 21] = b"\xff" * 16
    _patch_member(dst, 2, bytes(data), ds)
    ds = load_shards(dst)
    decode_on_device(TrainConfig(decode="gpu", data=str(dst)), [ds])
    loader = BatchLoader(ds, 8, workers=0)
    batches = list(Prefetcher(loader, torch.device("cpu")))
    assert load_shards(dst)[2][0] is None  # the workers' decoder refuses it too
    assert sum(len(y) for _, y in batches) == len(ds) - 1 and ds.where(2) in capsys.readouterr().err
    assert ds.where(2) in {w for w, _ in loader.skipped}
    labels = torch.cat([y for _, y in batches])  # the labels go with their images: member 2's is the one dropped
    assert torch.equal(labels, torch.cat([ds.labels[:2], ds.labels[3:]]))
    folder = make_folder(tmp_path / "folder", {"train": 2, "val": 1})
    with pytest.raises(UserError, match="not a shard set"):
        decode_on_device(TrainConfig(decode="gpu", data=str(folder)), [load_dataset(str(folder), "train")])
