"""``alexnet bench train``: every figure it promises, from a tiny run on generated data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from alexnet.cli import main

from .conftest import make_folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("bench")
    folder = make_folder(root / "photos", {"train": 12, "val": 2}, size=40)
    assert main(["prepare", str(folder), str(root / "packed"), "--size", "36", "--workers", "1"]) == 0
    return folder, root / "packed"


def test_bench_train_json_has_every_field(photos: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    folder, packed = photos
    capsys.readouterr()
    rc = main(
        [
            "bench",
            "train",
            "--model",
            "cifar_18pct",
            "--precision",
            "fp32",
            "--batch-size",
            "8",
            "--steps",
            "1",
            "--warmup",
            "1",
            "--repeats",
            "2",
            "--data",
            str(packed),
            "--jpeg-dir",
            str(folder),
            "--workers",
            "0",
            "--json",
        ]
    )
    assert rc == 0
    r = json.loads(capsys.readouterr().out)
    for key in (
        "images_per_sec",
        "step_images_per_sec",
        "baseline_images_per_sec",
        "ratio",
        "matmul_flops",
        "step_flops_fraction",
        "device",
        "torch",
        "lrn_share",
        "step_without_lrn_images_per_sec",
    ):
        assert r[key] is not None, key
    assert r["images_per_sec"] > 0 and r["step_images_per_sec"] > 0 and r["baseline_images_per_sec"] > 0
    assert r["ratio"] == pytest.approx(r["images_per_sec"] / r["baseline_images_per_sec"])
    assert r["step_flops_fraction"] == pytest.approx(
        r["step_images_per_sec"] * r["step_flops_per_image"] / r["matmul_flops"]
    )
    assert r["lrn_share"] == pytest.approx(1 - r["step_images_per_sec"] / r["step_without_lrn_images_per_sec"])
    assert all(len(v) == 2 for v in r["runs_seconds_per_step"].values())  # every arm, every repeat


def test_bench_train_table_for_several_models(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "bench",
            "train",
            "--model",
            "cifar_80sec",
            "lenet5",
            "--precision",
            "fp32",
            "--batch-size",
            "4",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--repeats",
            "1",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "| `cifar_80sec` |" in out and "| `lenet5` |" in out and "matmul:" in out


def test_bench_train_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["bench", "train", "--model", "nope", "--steps", "1"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert main(["bench", "train", "--jpeg-dir", str(tmp_path / "missing")]) == 2
    assert main(["bench", "train", "--model", "lenet5", "--cuda-graphs", "--device", "cpu"]) == 2
    assert "--cuda-graphs needs a CUDA device" in capsys.readouterr().err


def test_bench_train_makes_the_kernel_choices_train_makes(monkeypatch: pytest.MonkeyPatch) -> None:
    """TF32 and cuDNN autotuning as `alexnet train` sets them by default (bench once set autotuning only)."""
    from alexnet import bench
    from alexnet.runtime import kernel_settings

    applied: list[dict] = []
    monkeypatch.setattr(bench, "apply_kernel_settings", applied.append)
    # the peak-FLOP/s probe (a 4096 x 4096 product) is not under test: on the 2-core EPYC CI machine of
    # 2026-12-03 it ran for over 15 minutes in this test (earlier CI on a Xeon passed), so it is stubbed here
    monkeypatch.setattr(bench, "matmul_flops", lambda *a, **k: 1e12)
    bench.bench_train(["lenet5"], batch_size=4, steps=1, warmup=0, repeats=1, device="cpu", log=lambda s: None)
    dev = torch.device("cpu")
    assert applied == [kernel_settings(dev, deterministic=False, tf32=True, cudnn_benchmark=True)]
