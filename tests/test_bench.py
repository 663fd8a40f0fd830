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
    bench.bench_train(["lenet5"], batch_size=4, steps=1, warmup=0, repeats=1, device="cpu", log=lambda s: None)
    dev = torch.device("cpu")
    assert applied == [kernel_settings(dev, deterministic=False, tf32=True, cudnn_benchmark=True)]


def test_the_matmul_probe_grows_only_while_a_product_fits_its_budget() -> None:
    """A fixed 4096 x 4096 bf16 product took minutes on a CPU that emulates bf16 (0.8 GFLOP/s): the probe's
    size doubles only while the next product (8x the work) fits the budget, up to the largest."""
    from alexnet.bench import probe_size

    def at(gflops: float) -> tuple[list[int], object]:
        tried: list[int] = []

        def seconds_for(n: int) -> float:
            tried.append(n)
            return 2 * n**3 / (gflops * 1e9)

        return tried, seconds_for

    tried, slow = at(0.8)  # bf16 emulated on an AVX2 CPU
    n = probe_size(slow, 4096, budget=0.5)
    assert n == 512 and tried == [256, 512]  # 8 x 0.34 s for 1024 would be past the budget
    assert 2 * n**3 / 0.8e9 <= 0.5
    tried, fast = at(1e6)  # a GPU: every size fits, up to the largest
    assert probe_size(fast, 8192, budget=0.5) == 8192 and tried == [256, 512, 1024, 2048, 4096]
    assert probe_size(slow, 4096, budget=0.0) == 256  # the smallest, whatever the budget


def test_the_matmul_probe_reports_its_size() -> None:
    from alexnet.bench import matmul_flops

    flops, n = matmul_flops(torch.device("cpu"), "fp32", n=64, repeats=1)
    assert n == 64 and flops > 0
    flops, n = matmul_flops(torch.device("cpu"), "fp32", repeats=1, budget=0.0)
    assert n == 256 and flops > 0


@pytest.mark.parametrize("native", [True, False])
def test_half_precision_on_a_cpu_without_its_kernels_is_said(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    """bf16/fp16 asked on a CPU that oneDNN says has no kernels for them: one line saying so and what is
    fast instead (here from bench; train's and evaluate's in test_train.py and test_cli.py); nothing for
    fp32, auto, or a GPU."""
    from alexnet import bench
    from alexnet.runtime import slow_half_precision

    for name in ("_is_mkldnn_bf16_supported", "_is_mkldnn_fp16_supported"):
        monkeypatch.setattr(torch.ops.mkldnn, name, lambda: native)
    for precision in ("bf16", "fp16"):
        note = slow_half_precision(precision, "cpu")
        assert (note is None) == native
        if note:
            assert note.startswith(f"--precision {precision}: this CPU has no native {precision} kernels")
            assert "--precision fp32 or auto" in note and "\n" not in note
        assert slow_half_precision(precision, "cuda") is None
    assert slow_half_precision("fp32", "cpu") is None and slow_half_precision("auto", "cpu") is None
    said: list[str] = []
    monkeypatch.setattr(bench, "matmul_flops", lambda *a, **k: (1e12, 256))  # the note, not the probe, is tested
    bench.bench_train(
        ["lenet5"], batch_size=2, steps=1, warmup=0, repeats=1, device="cpu", precision="bf16", log=said.append
    )
    assert any(s.startswith("--precision bf16: this CPU") for s in said) != native
