"""torchrun on the CPU (gloo): 2 processes x batch 18 give the weights of 1 process x batch 36,
and evaluation counts every validation image exactly once across the processes."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alexnet import TrainConfig
from alexnet.train import train

ARGS = dict(model="cifar_80sec", epochs=2, batch_size=36, lr=0.05, schedule="constant", random_crop=False,
            flip=False, workers=0, max_val_images=59)  # 180 train images = 5 steps of 36; an odd val count


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_two_processes_match_one_process(tiny_folder: Path, tmp_path: Path) -> None:
    train(TrainConfig(data=str(tiny_folder), out=str(tmp_path / "one"), model_options={"init": "torch"}, **ARGS),
          progress=False, log=lambda s: None)
    flags = [f"--{k.replace('_', '-')}" + ("" if isinstance(v, bool) else f"={v}") if v is not False
             else f"--no-{k.replace('_', '-')}" for k, v in ARGS.items()]
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "-m", "alexnet", "train", "--data", str(tiny_folder),
         "--out", str(tmp_path / "two"), "--model-opt", 'init="torch"', *flags],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    one = torch.load(tmp_path / "one" / "last.pt", weights_only=True)
    two = torch.load(tmp_path / "two" / "last.pt", weights_only=True)
    for k, v in one["model"].items():
        assert torch.allclose(v, two["model"][k], atol=1e-5, rtol=1e-4), k
    assert two["environment"]["processes"] == "2"
    rows = list(csv.DictReader(open(tmp_path / "two" / "metrics.csv")))
    assert [int(r["val_images"]) for r in rows] == [59, 59]  # each image once, none padded in
    ref = list(csv.DictReader(open(tmp_path / "one" / "metrics.csv")))
    assert abs(float(rows[-1]["val_top1_error"]) - float(ref[-1]["val_top1_error"])) < 1e-6
    assert abs(float(rows[-1]["train_loss"]) - float(ref[-1]["train_loss"])) < 1e-4
