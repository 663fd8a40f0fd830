"""Real-data tests on the shared MNIST and CIFAR-10 copies (``-m realdata``; skipped without
$ALEXNET_DATA_ROOT pointing at them). Run with ``make test-realdata``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from alexnet import TrainConfig
from alexnet.data.datasets import load_dataset
from alexnet.train import train

from .conftest import real_data_root

pytestmark = pytest.mark.realdata
ROOT = real_data_root()
needs_data = pytest.mark.skipif(ROOT is None, reason="set ALEXNET_DATA_ROOT to the shared data folder")


@needs_data
def test_mnist_loads_both_splits() -> None:
    train_ds = load_dataset(f"mnist:{ROOT}", "train")
    test_ds = load_dataset(f"mnist:{ROOT}", "val")
    assert train_ds.images.shape == (60000, 1, 28, 28) and test_ds.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(test_ds.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    raw = (Path(ROOT) / "MNIST" / "raw" / "train-images-idx3-ubyte").read_bytes()
    assert hashlib.md5(raw).hexdigest() == "6bbc9ace898e44ae57da46a324031adb"
    assert bytes(train_ds.images[0].flatten().tolist()) == raw[16 : 16 + 784]


@needs_data
def test_cifar10_archive_loads_both_splits() -> None:
    train_ds = load_dataset(f"cifar10:{ROOT}", "train")
    test_ds = load_dataset(f"cifar10:{ROOT}", "val")
    assert train_ds.images.shape == (50000, 3, 32, 32) and test_ds.images.shape == (10000, 3, 32, 32)
    assert train_ds.classes[0] == "airplane" and train_ds.classes[-1] == "truck"
    assert torch.bincount(test_ds.labels).tolist() == [1000] * 10


@needs_data
def test_lenet5_learns_mnist_in_one_short_epoch(tmp_path: Path) -> None:
    cfg = TrainConfig.from_recipe("lenet5_mnist", data=f"mnist:{ROOT}", out=str(tmp_path / "r"), epochs=1,
                                  max_train_images=10000, max_val_images=2000, warmup_epochs=0.0)
    result = train(cfg, progress=False, log=lambda s: None)
    assert result.final is not None and result.final.top1_error < 0.08
