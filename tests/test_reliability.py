"""Careless and hostile use, one case per test: each ends in one line and the documented exit status,
and nothing is lost (issue 10's list). The slow and mount-needing cases are in test_faults.py."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from alexnet import TrainConfig, UserError
from alexnet.cli import main
from alexnet.commands.train import default_recipe
from alexnet.training import train

from .conftest import make_folder


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str, needle: str) -> bool:
    return needle in err and err.strip().count("\n") == 0 and "Traceback" not in err


TINY = [
    "--model",
    "cifar_80sec",
    "--epochs",
    "1",
    "--batch-size",
    "32",
    "--workers",
    "0",
    "--max-train-images",
    "48",
    "--model-opt",
    'init="torch"',
]


@pytest.fixture
def quick_run(tiny_folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    cfg = TrainConfig(
        model="cifar_80sec",
        data=str(tiny_folder),
        out=str(out),
        epochs=1,
        batch_size=32,
        workers=0,
        max_train_images=48,
        model_options={"init": "torch"},
    )
    train(cfg, progress=False, log=lambda s: None)
    return out


# 1, 2, 10: where a run may be written ------------------------------------------------------------
def test_a_folder_with_run_files_but_no_last_pt_is_refused(capsys, tiny_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "old"
    out.mkdir()
    for name in ("best.pt", "metrics.csv", "config.toml"):
        (out / name).write_text("precious")
    code, _, err = run(capsys, "train", "--data", str(tiny_folder), "--out", str(out), *TINY)
    assert code == 2 and one_line(
        err.splitlines()[-1], "already holds a run's files (best.pt, config.toml, metrics.csv)"
    )
    assert all((out / n).read_text() == "precious" for n in ("best.pt", "metrics.csv", "config.toml"))
    other = tmp_path / "notes"
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    code, _, err = run(capsys, "train", "--data", str(tiny_folder), "--out", str(other), *TINY)
    assert code == 2 and "already holds 1 other file(s) (thesis.tex)" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(capsys, "train", "--data", str(tiny_folder), "--out", str(empty), *TINY)[0] == 0


def test_out_naming_a_file_is_one_line(capsys, tiny_folder: Path, tmp_path: Path) -> None:
    f = tmp_path / "file.txt"
    f.write_text("x")
    code, _, err = run(capsys, "train", "--data", str(tiny_folder), "--out", str(f), *TINY)
    assert code == 2 and one_line(err, "exists and is not a folder") and f.read_text() == "x"


def test_out_inside_the_dataset_is_refused(capsys, tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data", {"train": 4, "val": 2})
    code, _, err = run(capsys, "train", "--data", str(data), "--out", str(data / "train" / "runs"), *TINY)
    assert code == 2 and "inside the dataset's folder" in err
    assert not (data / "train" / "runs").exists()


# 3, and the command as users type it -----------------------------------------------------------
def test_resume_refuses_another_config_and_names_the_keys(capsys, quick_run: Path, tmp_path: Path) -> None:
    other = make_folder(tmp_path / "other", {"train": 4, "val": 2})
    before = (quick_run / "last.pt").read_bytes()
    code, _, err = run(capsys, "train", "--resume", str(quick_run), "--data", str(other), "--lr", "0.5")
    assert code == 2 and "differs from the run's" in err and "data" in err and "lr" in err
    assert (quick_run / "last.pt").read_bytes() == before  # nothing touched


def test_resume_refuses_a_changed_class_list(quick_run: Path, tiny_folder: Path) -> None:
    cfg = TrainConfig.from_recipe(quick_run / "config.toml", resume=True, epochs=2)
    ck = torch.load(quick_run / "last.pt", weights_only=True)
    ck["classes"] = ["blue", "green", "violet"]
    torch.save(ck, quick_run / "last.pt")
    with pytest.raises(UserError, match="classes are not the run's"):
        train(cfg, progress=False, log=lambda s: None)


def test_resume_run_alone_continues_and_may_change_the_epochs(capsys, quick_run: Path) -> None:
    code, _, err = run(capsys, "train", "--resume", str(quick_run), "--epochs", "2")
    assert code == 0 and "resuming" in err
    assert len((quick_run / "metrics.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs


def test_stale_temporaries_are_removed_when_a_run_resumes(capsys, quick_run: Path) -> None:
    stale = quick_run / ".last.pt.abc123.tmp"
    stale.write_bytes(b"\0" * 1000)
    (quick_run / "metrics.csv.tmp").write_text("half")
    assert run(capsys, "train", "--resume", str(quick_run), "--epochs", "2")[0] == 0
    assert not stale.exists() and not list(quick_run.glob("*.tmp")) and not list(quick_run.glob(".*.tmp"))


def test_no_recipe_takes_the_shipped_one_for_the_model_and_data(capsys, tmp_path: Path) -> None:
    assert default_recipe("lenet5", "mnist:/x") == "lenet5_mnist"
    assert default_recipe("cifar_18pct", "cifar10") == "cifar_18pct_cifar10"
    assert default_recipe("alexnet", str(tmp_path)) == "alexnet_imagenet"
    assert default_recipe("lenet5", str(tmp_path)) is None
    code, _, err = run(
        capsys, "train", "--model", "lenet5", "--data", f"mnist:{tmp_path / 'none'}", "--out", str(tmp_path / "r")
    )
    assert err.splitlines()[0].startswith("using the shipped recipe lenet5_mnist") and code == 2


def test_a_crop_the_network_cannot_take_fails_before_any_work(capsys, tiny_folder: Path, tmp_path: Path) -> None:
    code, _, err = run(
        capsys, "train", "--data", str(tiny_folder), "--out", str(tmp_path / "r"), "--crop-size", "24", *TINY
    )
    assert code == 2 and "input_size=24" in err and "Traceback" not in err
    assert not (tmp_path / "r" / "last.pt").exists()


# 4, 9: prepare -----------------------------------------------------------------------------------
def test_prepare_refuses_a_dataset_made_from_another_source(capsys, tmp_path: Path) -> None:
    a = make_folder(tmp_path / "a", {"train": 3, "val": 1})
    b = make_folder(tmp_path / "b", {"train": 3, "val": 1}, seed=1)
    assert run(capsys, "prepare", str(a), str(tmp_path / "p"), "--size", "32", "--workers", "0")[0] == 0
    code, _, err = run(capsys, "prepare", str(b), str(tmp_path / "p"), "--size", "32", "--workers", "0")
    assert code == 2 and one_line(err, f"made from {a}") and f"not from SRC {b}" in err


def test_prepare_reserves_its_space(tmp_path: Path) -> None:
    from alexnet.data.packed.writer import _reserve

    _reserve(tmp_path / "f", 1 << 20)
    assert (tmp_path / "f").stat().st_size == 1 << 20
    assert (tmp_path / "f").stat().st_blocks * 512 >= 1 << 20  # allocated, not sparse


def test_a_long_strip_costs_little_memory(tmp_path: Path) -> None:
    """A 124-byte 1x10000 PNG once cost 3 GB: the central square is cut before resizing."""
    src = tmp_path / "src"
    for split in ("train", "val"):
        d = src / split / "a"
        d.mkdir(parents=True)
        Image.new("RGB", (1, 10000), (200, 10, 10)).save(d / "strip.png")
        Image.new("RGB", (40, 30), (10, 200, 10)).save(d / "ok.png")
    # VmHWM: this process's own peak (rusage would count the pages of the big test process it forked from)
    code = (
        "import sys; from alexnet.data.packed.writer import prepare; prepare(sys.argv[1], sys.argv[2], size=256, "
        "workers=0, progress=False); print(next(line.split()[1] for line in open('/proc/self/status') "
        "if line.startswith('VmHWM')))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(src), str(tmp_path / "p")], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    peak_mb = int(r.stdout.strip()) / 1024
    assert peak_mb < 1000, f"peak RSS {peak_mb:.0f} MB"
    from alexnet.data.images import resize_center_square

    out = resize_center_square(Image.new("RGB", (1, 10000)), 256)
    assert out.size == (256, 256)


# 6: FIFOs ----------------------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_fifos_are_skipped_not_waited_for(capsys, trained_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (32, 32), (220, 10, 10)).save(folder / "red.png")
    os.mkfifo(folder / "pipe.png")
    os.mkfifo(tmp_path / "lone.jpg")
    result: dict = {}

    def go() -> None:
        result["code"] = main(["predict", str(trained_run), str(folder), str(tmp_path / "lone.jpg")])

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "predict hung on a FIFO"
    _, err = capsys.readouterr()
    assert result["code"] == 1 and "pipe.png: not a regular file" in err and "lone.jpg: not a regular file" in err
    # and inside a dataset folder (prepare's source, training)
    data = make_folder(tmp_path / "data", {"train": 3, "val": 1})
    os.mkfifo(data / "train" / "red" / "fifo.png")
    t = threading.Thread(
        target=lambda: result.__setitem__(
            "prep", main(["prepare", str(data), str(tmp_path / "p"), "--size", "32", "--workers", "0"])
        ),
        daemon=True,
    )
    t.start()
    t.join(60)
    assert not t.is_alive() and result["prep"] == 0
    assert "fifo.png: not a regular file" in capsys.readouterr().err


def test_symlink_loops_are_walked_once(tmp_path: Path) -> None:
    from alexnet.data.datasets import list_folder

    data = make_folder(tmp_path / "data", {"train": 2, "val": 1})
    os.symlink(data / "train" / "red", data / "train" / "red" / "loop")
    samples, classes = list_folder(data, "train")
    assert len(samples) == 6 and classes == ["blue", "green", "red"]


# 8: disk full while writing a checkpoint ---------------------------------------------------------
def test_a_full_disk_while_checkpointing_is_one_line_and_the_last_checkpoint_survives(
    capsys, monkeypatch: pytest.MonkeyPatch, quick_run: Path
) -> None:
    import alexnet.engine.runfolder as run_module

    before = (quick_run / "last.pt").read_bytes()

    def full(obj, path):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_module, "save_checkpoint", full)
    code, _, err = run(capsys, "train", "--resume", str(quick_run), "--epochs", "2")
    last = err.strip().splitlines()[-1]
    assert code == 2 and "last.pt: the disk is full" in last and "MB free" in last and "Traceback" not in err
    assert (quick_run / "last.pt").read_bytes() == before
    monkeypatch.undo()
    assert run(capsys, "train", "--resume", str(quick_run), "--epochs", "2")[0] == 0  # and it resumes afterwards


# 11: named datasets with a missing ROOT ----------------------------------------------------------
@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_a_missing_root_leaves_no_empty_folders(capsys, tmp_path: Path, name: str, monkeypatch) -> None:
    import torchvision.datasets.utils as tv_utils

    def offline(*a, **k):  # no network here or in CI; make sure of it
        raise OSError("network is unreachable")

    monkeypatch.setattr(tv_utils, "download_url", offline)
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    root = tmp_path / "missing" / "deeper"
    code, _, err = run(capsys, "evaluate", str(tmp_path), "--data", f"{name}:{root}")
    assert code == 2
    from alexnet.data.datasets import load_dataset

    with pytest.raises(UserError):
        load_dataset(f"{name}:{root}", "train")
    assert not (tmp_path / "missing").exists()


# checkpoints, predict's exit status, archives --------------------------------------------------
def test_a_refused_checkpoint_does_not_suggest_the_unsafe_load(capsys, tmp_path: Path) -> None:
    import pickle

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    bad = tmp_path / "evil.pt"
    torch.save({"model": Evil(), "model_name": "lenet5"}, bad, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    code, _, err = run(capsys, "predict", str(bad), str(bad))
    assert code == 2 and one_line(err, "not a readable checkpoint") and "weights_only" not in err
    assert "False" not in err and not (tmp_path / "pwned").exists()


def test_predict_exit_status_rule(capsys, trained_run: Path, tmp_path: Path) -> None:
    good = tmp_path / "red.png"
    Image.new("RGB", (32, 32), (220, 10, 10)).save(good)
    code, _, err = run(capsys, "predict", str(trained_run), str(tmp_path / "missing.jpg"))
    assert code == 2 and one_line(err, "missing.jpg: no such file")  # nothing to do: a user mistake
    code, out, err = run(capsys, "predict", str(trained_run), str(good), str(tmp_path / "missing.jpg"))
    assert code == 1 and "red.png" in out and "missing.jpg: no such file" in err  # the rest classified
    assert run(capsys, "predict", str(trained_run), str(good))[0] == 0


def test_archive_bombs_are_refused_before_the_disk_fills(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from alexnet.data.datasets import resolve_folder

    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "cache"))
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("data/train/a/zeros.png", b"\0" * (200 << 20))
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(UserError, match="decompression bomb"):
        resolve_folder(bomb)
    assert not any((tmp_path / "cache").rglob("zeros.png"))
    # path traversal stays inside the extraction folder
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as t:
        payload = tmp_path / "p.txt"
        payload.write_text("x")
        t.add(payload, arcname="../../escaped.txt")
    with pytest.raises(UserError):
        resolve_folder(evil)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path.parent / "escaped.txt").exists()
