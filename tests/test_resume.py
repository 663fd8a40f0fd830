"""Exact resume: a CPU run killed with SIGKILL mid-epoch, or stopped with SIGTERM, and resumed
ends with weights bitwise identical to an uninterrupted run."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from .conftest import make_folder

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals")


def _cmd(data: Path, out: Path, *extra: str) -> list[str]:
    # the paper network at quarter width on 112-pixel crops: slow enough steps to be caught mid-epoch;
    # dropout, random crops and flips, and the distortions' and colour noise's own generator all draw
    # random numbers that the resume must restore
    return [
        sys.executable,
        "-m",
        "alexnet",
        "train",
        "--model",
        "alexnet",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "3",
        "--batch-size",
        "12",
        "--lr",
        "0.01",
        "--schedule",
        "cosine",
        "--image-size",
        "128",
        "--crop-size",
        "112",
        "--workers",
        "0",
        "--checkpoint-every",
        "2",
        "--model-opt",
        "width=0.25",
        "--model-opt",
        "top_width=0.25",
        "--model-opt",
        'init="caffe"',
        "--pca-lighting",
        "0.1",
        "--affine-scale",
        "0.1",
        "--affine-shear",
        "0.1",
        *extra,
    ]


# the modern recipe's options, each drawing random numbers or depending on the step: TrivialAugment and
# random erasing per image, MixUp or CutMix per batch, gradient clipping, warm-up under the cosine and
# its floor (with per-channel normalisation: the automatic augmentation takes uint8 crops)
MODERN = (
    "--normalize",
    "meanstd",
    "--auto-augment",
    "ta_wide",
    "--random-erase",
    "0.25",
    "--mixup-alpha",
    "0.2",
    "--cutmix-alpha",
    "1.0",
    "--clip-grad-norm",
    "0.5",
    "--warmup-epochs",
    "0.5",
    "--lr-min",
    "0.001",
    "--model-ema",
    "--model-ema-steps",
    "2",
    "--model-ema-decay",
    "0.999",
)
TIMES = {"train_seconds", "epoch_seconds", "elapsed_seconds", "images_per_sec"}  # the columns that may differ


def _metrics(out: Path) -> list[dict[str, str]]:
    """metrics.csv's rows without the timing columns (equal in a resumed run, bit for bit as printed)."""
    with open(out / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMES} for row in csv.DictReader(f)]


def _position(path: Path) -> tuple[int, int]:
    """(completed epochs, batches done in the epoch in progress) of a last.pt; (-1, -1) if unreadable yet."""
    try:
        ck = torch.load(path, weights_only=True)
    except Exception:  # not written yet
        return -1, -1
    return int(ck["epoch"]), int(ck["train_state"]["batches_done"])


def _wait_for_mid_epoch(proc: subprocess.Popen, path: Path, timeout: float = 240) -> tuple[int, int]:
    t0 = time.time()
    while time.time() - t0 < timeout:
        assert proc.poll() is None, "the run finished before it could be interrupted"
        epoch, batches = _position(path) if path.exists() else (-1, -1)
        if epoch >= 1 and batches > 0:
            return epoch, batches
        time.sleep(0.05)
    raise AssertionError("no mid-epoch checkpoint appeared")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[tuple[str, ...], dict]]:
    root = tmp_path_factory.mktemp("resume")
    data = make_folder(root / "data", {"train": 30, "val": 4}, size=128)
    return root, data, {}


def _straight(setup: tuple, options: tuple[str, ...]) -> dict[str, Any]:
    """The uninterrupted run's final checkpoint and metrics with these options (run once per module)."""
    root, data, done = setup
    if options not in done:
        out = root / f"straight{len(done)}"
        r = subprocess.run(_cmd(data, out, *options), capture_output=True, text=True, env={**os.environ}, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        done[options] = {**torch.load(out / "last.pt", weights_only=True), "rows": _metrics(out)}
    return done[options]


@pytest.mark.parametrize(
    "how, options",
    [("SIGKILL", ()), ("SIGTERM", ()), ("SIGKILL", MODERN)],
    ids=["SIGKILL", "SIGTERM", "SIGKILL-modern-options"],
)
def test_interrupted_and_resumed_run_is_bitwise_identical(setup: tuple, how: str, options: tuple[str, ...]) -> None:
    root, data, _ = setup
    expect = _straight(setup, options)
    out = root / (how + ("-modern" if options else ""))
    proc = subprocess.Popen(_cmd(data, out, *options), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        epoch, batches = _wait_for_mid_epoch(proc, out / "last.pt")
        proc.send_signal(getattr(signal, how))
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    if how == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 130 and "interrupted" in err
        assert _position(out / "last.pt") >= (epoch, batches)
    split_epoch, split_batches = _position(out / "last.pt")
    assert split_epoch < 3  # it was stopped before the end
    # (a SIGKILL can land after an epoch's end, when last.pt is an end-of-epoch checkpoint)
    before = torch.load(out / "last.pt", weights_only=True)["train_state"].get("epoch_train_seconds")
    assert (before is not None and before > 0) == (split_batches > 0)
    r = subprocess.run(_cmd(data, out, *options, "--resume"), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming" in r.stderr
    if split_batches:  # the split epoch's training time counts both parts; its rate, the second part's
        with open(out / "metrics.csv", newline="") as f:
            row = list(csv.DictReader(f))[split_epoch]
        n_train = sum(1 for _ in (data / "train").rglob("*.png"))
        after = (n_train - 12 * split_batches) / float(row["images_per_sec"])
        assert float(row["train_seconds"]) == pytest.approx(before + after, rel=1e-3)
    got = torch.load(out / "last.pt", weights_only=True)
    for weights in ("model", "model_ema"):  # the EMA's with the modern options
        assert (weights in got) == (weights in expect) == (weights == "model" or bool(options))
        if weights in expect:
            assert got[weights].keys() == expect[weights].keys()
            for k in expect[weights]:
                assert torch.equal(got[weights][k], expect[weights][k]), (weights, k)
    if options:  # the EMA moved away from the weights, and was evaluated every epoch
        assert any(not torch.equal(got["model"][k], got["model_ema"][k]) for k in got["model"])
        assert all(row["ema_val_top1_error"] != "nan" for row in expect["rows"])
    assert _metrics(out) == expect["rows"]
