"""``alexnet prepare``: exact pixels after a round trip, bad files skipped and listed, resume after
an interruption, the stored statistics, and training straight from the packed folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet import TrainConfig, UserError
from alexnet.data.datasets import load_dataset
from alexnet.data.packed.reader import load_packed, packed_stats
from alexnet.data.packed.writer import prepare

from .conftest import CLASSES, make_folder
from .support.data import packed_bytes
from .test_images import bad_images, odd_images


def folder_pixels(root: Path, split: str) -> dict[str, np.ndarray]:
    return {
        str(p.relative_to(root)): np.array(Image.open(p).convert("RGB")) for p in sorted((root / split).rglob("*.png"))
    }


def test_round_trip_keeps_exact_pixels_and_labels(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "src", {"train": 5, "val": 3}, size=16)
    summary = prepare(src, tmp_path / "dst", size=16, workers=0, progress=False)
    assert summary.written == {"train": 15, "val": 9} and summary.skipped == {"train": [], "val": []}
    for split in ("train", "val"):
        ds = load_packed(tmp_path / "dst", split)
        names = json.loads((tmp_path / "dst" / f"{split}_files.json").read_text())
        expect = folder_pixels(src, split)
        assert ds.images.shape == (len(expect), 3, 16, 16) and ds.classes == CLASSES
        for i, (name, label) in enumerate(names):
            assert torch.equal(ds.images[i], torch.from_numpy(expect[name]).permute(2, 0, 1)), name
            assert ds.labels[i] == CLASSES.index(name.split("/")[1]) == label


def test_statistics_match_numpy(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "src", {"train": 4}, size=12)
    prepare(src, tmp_path / "dst", size=12, workers=0, progress=False)
    stats = packed_stats(tmp_path / "dst")
    x = np.stack(list(folder_pixels(src, "train").values())).astype(np.float64)  # N, 12, 12, 3
    assert np.allclose(stats["mean_image"], x.mean(0), atol=1e-3)
    assert np.allclose(stats["channel_mean"], x.mean((0, 1, 2)), atol=1e-6)
    assert np.allclose(stats["channel_std"], x.std((0, 1, 2)), atol=1e-6)
    cov = np.cov((x / 255).reshape(-1, 3).T, bias=True)
    vec, val = np.array(stats["eigvec"]), np.array(stats["eigval"])
    assert np.allclose(vec @ np.diag(val) @ vec.T, cov, atol=1e-9)
    assert val[0] >= val[1] >= val[2] >= 0


def test_bad_files_are_skipped_and_listed_and_the_rest_trains(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "src", {"train": 4, "val": 2}, size=40)
    red = src / "train" / "red"
    for kind, path in bad_images(tmp_path / "bad").items():
        if kind != "bomb":  # the bomb is covered by test_images; keep this test fast
            path.rename(red / path.name)
    (red / "empty.JPEG").write_bytes(b"")
    (red / "text.jpg").write_text("hello")
    (red / ".DS_Store").write_bytes(b"\0\1")
    (red / "notes.txt").write_text("notes")
    for kind, path in odd_images(tmp_path / "odd").items():
        if kind != "large":
            path.rename(src / "train" / "green" / f"odd {kind} 'q' ü{path.suffix}")
    png = src / "train" / "blue" / "0000.png"
    png.rename(src / "train" / "blue" / "png_named.JPEG")
    summary = prepare(src, tmp_path / "dst", size=32, workers=2, progress=False)
    skipped = dict(summary.skipped["train"])
    assert summary.written["train"] == 12 + 8 and summary.written["val"] == 6
    assert set(skipped) == {
        "train/red/notes_named.jpg",
        "train/red/truncated.jpg",
        "train/red/empty.png",
        "train/red/empty.JPEG",
        "train/red/text.jpg",
    }
    assert "not an image" in skipped["train/red/text.jpg"] and "unreadable" in skipped["train/red/truncated.jpg"]
    assert "skipped [train] train/red/text.jpg" in "\n".join(summary.lines())
    ds = load_packed(tmp_path / "dst", "train")
    assert len(ds) == 20 and torch.bincount(ds.labels).tolist() == [4, 12, 4]
    cfg = TrainConfig(
        model="cifar_80sec",
        data=str(tmp_path / "dst"),
        out=str(tmp_path / "run"),
        epochs=1,
        batch_size=8,
        workers=0,
        schedule="constant",
    )
    from alexnet.training import train

    result = train(cfg, progress=False, log=lambda s: None)
    assert result.final is not None and result.final.n == 6


def test_errors_before_any_work(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "src", {"train": 2, "val": 2})
    (src / "val" / "red").rename(src / "val" / "rot")
    with pytest.raises(UserError, match="class folders differ"):
        prepare(src, tmp_path / "dst", workers=0, progress=False)
    assert not (tmp_path / "dst" / "dataset.json").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(UserError, match="not a packed dataset"):
        prepare(make_folder(tmp_path / "ok", {"train": 1}), tmp_path / "full", workers=0, progress=False)


def test_interrupted_prepare_resumes_and_matches_a_clean_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import alexnet.data.packed.writer as prep

    src = make_folder(tmp_path / "src", {"train": 30, "val": 5}, size=16)
    prepare(src, tmp_path / "clean", size=16, workers=0, progress=False)
    calls = {"n": 0}
    real = prep._decode

    def flaky(task):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(prep, "CHUNK", 10)
    monkeypatch.setattr(prep, "FLUSH_EVERY", 10)
    monkeypatch.setattr(prep, "_decode", flaky)
    with pytest.raises(KeyboardInterrupt):
        prepare(src, tmp_path / "dst", size=16, workers=0, progress=False)
    meta = json.loads((tmp_path / "dst" / "dataset.json").read_text())
    status = np.fromfile(tmp_path / "dst" / "train_status.u8", np.uint8)
    assert not meta["complete"] and (status == 1).sum() == 20 and (status == 0).sum() == 70
    with pytest.raises(UserError, match="incomplete"):
        load_packed(tmp_path / "dst")
    monkeypatch.setattr(prep, "_decode", real)
    decoded = []
    monkeypatch.setattr(prep, "_decode", lambda task: decoded.append(len(task[0])) or real(task))
    prepare(src, tmp_path / "dst", size=16, workers=0, progress=False)
    assert sum(decoded) == 70 + 15  # only what was missing
    for split in ("train", "val"):
        a, b = load_packed(tmp_path / "clean", split), load_packed(tmp_path / "dst", split)
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    again = prepare(src, tmp_path / "dst", size=16, workers=0, progress=False)
    assert again.already_complete


def test_packed_folder_is_a_data_spec(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "src", {"train": 2, "test": 1}, size=16)
    prepare(src, tmp_path / "dst", size=16, workers=0, progress=False)
    assert len(load_dataset(str(tmp_path / "dst"), "val")) == 3


def test_ilsvrc_wnids_get_human_readable_names() -> None:
    from alexnet.data.imagenet import display_names, imagenet_names, imagenet_wnids

    wnids = imagenet_wnids()
    assert len(wnids) == 1000 == len(set(wnids)) and wnids == sorted(wnids)  # the devkit's order: class indices
    names = display_names(wnids)
    assert names[0] == "tench" and names[999] == "toilet tissue" and names == imagenet_names()
    # any subset of the WNIDs, in any order, is named (the README says so without a condition)
    assert display_names(["n01443537", "n01440764"]) == ["goldfish", "tench"]
    assert display_names(["n01440764", "cat"]) == ["tench", "cat"]  # anything else keeps its folder name
    assert display_names(["cat", "dog"]) == ["cat", "dog"]


def test_a_class_with_no_usable_image_is_an_error(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "src", {"train": 2}, size=16)
    for f in (src / "train" / "red").iterdir():
        f.write_text("broken")
    with pytest.raises(UserError, match="no usable training image in class folder.*red"):
        prepare(src, tmp_path / "dst", size=16, workers=0, progress=False)


def test_official_ilsvrc2012_archives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A miniature of the official archive layout, read through torchvision's ImageNet."""
    import io
    import tarfile

    sio = pytest.importorskip("scipy.io")
    import torchvision.datasets.imagenet as tv_imagenet

    monkeypatch.setattr(tv_imagenet, "_verify_archive", lambda *a: None)  # our miniature has other MD5s
    root = tmp_path / "ilsvrc"
    root.mkdir()
    wnids = ["n01440764", "n01443537"]
    dt = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("gloss", "O"), ("num_children", "O")]
    synsets = np.zeros((3, 1), dtype=dt)
    for i, row in enumerate(
        [
            (1, wnids[0], "tench, Tinca tinca", "", 0),
            (2, wnids[1], "goldfish, Carassius auratus", "", 0),
            (3, "n00000001", "fish", "", 2),
        ]
    ):
        synsets[i, 0] = row
    rng = np.random.default_rng(0)

    def jpeg() -> bytes:
        b = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(b, "JPEG")
        return b.getvalue()

    def add(t: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))

    mat = io.BytesIO()
    sio.savemat(mat, {"synsets": synsets})
    val_labels = [1, 2, 2]  # ILSVRC IDs of val images 1..3
    with tarfile.open(root / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as t:
        add(t, "ILSVRC2012_devkit_t12/data/meta.mat", mat.getvalue())
        add(
            t,
            "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt",
            "".join(f"{v}\n" for v in val_labels).encode(),
        )
    with tarfile.open(root / "ILSVRC2012_img_train.tar", "w") as t:
        for w in wnids:
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as it:
                for k in range(3):
                    add(it, f"{w}_{k}.JPEG", jpeg())
            add(t, f"{w}.tar", inner.getvalue())
    with tarfile.open(root / "ILSVRC2012_img_val.tar", "w") as t:
        for k in range(3):
            add(t, f"ILSVRC2012_val_{k + 1:08d}.JPEG", jpeg())
    summary = prepare(root, tmp_path / "dst", size=32, workers=0, progress=False)
    assert summary.written == {"train": 6, "val": 3}
    meta = json.loads((tmp_path / "dst" / "dataset.json").read_text())
    assert meta["classes"] == wnids and meta["class_names"] == ["tench", "goldfish"]
    assert load_packed(tmp_path / "dst", "val").labels.tolist() == [0, 1, 1]


# -- reliability, round three: prepare converges, is exclusive, and names files safely -----------------
def source_with_bad_files(root: Path) -> Path:
    src = make_folder(root, {"train": 24, "val": 6}, size=40)
    for i, name in enumerate(("x.png", "y.jpg", "z.png")):  # unusable files among the good ones
        (src / "train" / CLASSES[i % len(CLASSES)] / name).write_bytes(b"not an image" * (i + 1))
    return src


def test_a_prepare_killed_during_its_compaction_converges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash during the compaction or after it (the slots of skipped files refilled from the end of
    the split), then a rerun: every file byte for byte an uninterrupted prepare's, the skipped files
    listed once, in file order."""
    from alexnet.data.packed import writer

    src = source_with_bad_files(tmp_path / "src")
    prepare(src, tmp_path / "straight", size=32, workers=0, progress=False)
    want = packed_bytes(tmp_path / "straight")
    assert len(json.loads(want["dataset.json"])["splits"]["train"]["skipped"]) == 3

    class Killed(BaseException):  # not an Exception: nothing catches it, as nothing catches SIGKILL
        pass

    real_write, real_truncate, real_stats = writer.write_meta, os.truncate, writer.dataset_statistics

    def statistics(*args: Any) -> None:
        raise Killed

    for moment in ("after the plan", "after the moves", "after the truncation", "before the statistics"):
        dst = tmp_path / moment.replace(" ", "-")

        def write_meta(d: Path, meta: dict, moment: str = moment) -> None:
            real_write(d, meta)
            plan = any("compaction" in s for s in meta["splits"].values())
            if plan and moment == "after the plan":
                raise Killed

        def truncate(path: Any, n: int, moment: str = moment) -> None:
            if moment == "after the moves":
                raise Killed
            real_truncate(path, n)
            if moment == "after the truncation" and str(path).endswith("status.u8"):
                raise Killed

        monkeypatch.setattr(writer, "write_meta", write_meta)
        monkeypatch.setattr(writer.os, "truncate", truncate)
        if moment == "before the statistics":  # every split compacted: the rerun must not compact again
            monkeypatch.setattr(writer, "dataset_statistics", statistics)
        with pytest.raises(Killed):
            prepare(src, dst, size=32, workers=0, progress=False)
        monkeypatch.setattr(writer, "write_meta", real_write)
        monkeypatch.setattr(writer.os, "truncate", real_truncate)
        monkeypatch.setattr(writer, "dataset_statistics", real_stats)
        prepare(src, dst, size=32, workers=0, progress=False)
        assert packed_bytes(dst) == want, moment


def test_a_lost_skip_reason_is_found_again(tmp_path: Path) -> None:
    """The status file and dataset.json reach the disk at different moments: a file marked skipped
    whose reason was not saved is decoded again, and the list ends as an uninterrupted prepare's."""
    from alexnet.data.packed.format import SKIPPED, SplitFiles

    src = source_with_bad_files(tmp_path / "src")
    prepare(src, tmp_path / "straight", size=32, workers=0, progress=False)
    dst = tmp_path / "cut"
    meta = writer_initialise(src, dst)
    files = SplitFiles.open(dst, "train", meta["splits"]["train"]["count"], 32, 3, "r+")
    names = json.loads((dst / "train_files.json").read_text())
    bad = [i for i, (p, _) in enumerate(names) if p.endswith(("x.png", "y.jpg"))]
    files.status[bad] = SKIPPED  # on disk before the crash, without their reasons in dataset.json
    files.flush()
    del files
    prepare(src, dst, size=32, workers=0, progress=False)
    assert packed_bytes(dst) == packed_bytes(tmp_path / "straight")


def writer_initialise(src: Path, dst: Path) -> dict:
    from alexnet.data.packed import writer

    return writer._initialise(src, dst, 32)


def test_two_prepares_into_one_folder_the_second_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import fcntl

    from alexnet.cli import main

    src = make_folder(tmp_path / "src", {"train": 4, "val": 2}, size=32)
    dst = tmp_path / "dst"
    dst.mkdir()
    fd = os.open(dst / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another prepare is writing it
    os.pwrite(fd, b"alexnet prepare, process 4242", 0)
    try:
        assert main(["prepare", str(src), str(dst)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "in use by alexnet prepare, process 4242" in err, err
    finally:
        os.close(fd)
    assert main(["prepare", str(src), str(dst), "--workers", "0"]) == 0  # once it is gone: the lock is taken over


def test_a_class_linked_to_another_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from alexnet.cli import main

    src = make_folder(tmp_path / "src", {"train": 3, "val": 1}, size=32)
    (src / "train" / "zzz").symlink_to(src / "train" / CLASSES[0], target_is_directory=True)
    (src / "val" / "zzz").mkdir()
    (src / "val" / "zzz" / "a.png").write_bytes((src / "val" / CLASSES[0] / "0000.png").read_bytes())
    assert main(["prepare", str(src), str(tmp_path / "dst")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "symbolic link" in err and "two labels" in err, err
    (src / "train" / "zzz").unlink()
    (src / "train" / "zzz").mkdir()  # a file linked from another class: the same image under two labels
    (src / "train" / "zzz" / "x.png").symlink_to(src / "train" / CLASSES[1] / "0000.png")
    assert main(["prepare", str(src), str(tmp_path / "dst2")]) == 2
    assert "two labels" in capsys.readouterr().err
    (src / "train" / "zzz" / "x.png").unlink()
    os.link(src / "train" / CLASSES[1] / "0000.png", src / "train" / "zzz" / "x.png")  # a hard link
    assert main(["prepare", str(src), str(tmp_path / "dst3")]) == 2
    assert "two labels" in capsys.readouterr().err


def test_names_are_printed_escaped_everywhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file or folder name with a newline or a terminal escape cannot forge an `alexnet: error:` line
    or drive the terminal: every line that names a file goes through one function (errors.printable)."""
    from alexnet.cli import main

    src = make_folder(tmp_path / "src", {"train": 3, "val": 1}, size=32)
    evil = src / "train" / CLASSES[0] / "x\nalexnet: error: forged\x1b[2J.png"
    evil.write_bytes(b"not an image")
    assert main(["prepare", str(src), str(tmp_path / "dst"), "--workers", "0"]) == 0
    out = capsys.readouterr()
    for text in (out.out, out.err):
        assert "\x1b" not in text and "\nalexnet: error: forged" not in text
    assert "x\\nalexnet: error: forged\\x1b[2J.png" in out.out + out.err
    assert main(["prepare", str(tmp_path / "no\nsuch\x1b"), str(tmp_path / "d2")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "\x1b" not in err
    load_dataset(str(src), "train", image_size=32, workers=0)  # the training loader's warnings
    err = capsys.readouterr().err
    assert "warning: skipped" in err and "\x1b" not in err and "\nalexnet: error: forged" not in err
    from alexnet.errors import printable

    assert printable("café\n.png") == "café\\n.png"  # only the control characters are escaped
