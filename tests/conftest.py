"""Shared fixtures: small generated datasets and a tiny trained run (seconds on a CPU)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CLASSES = ["blue", "green", "red"]

try:  # property tests: the same examples on every run (CI must not fail by chance); explore with
    # HYPOTHESIS_PROFILE=explore, which draws new ones each time and keeps what it finds in .hypothesis/
    from hypothesis import settings as _hsettings

    _hsettings.register_profile("repeatable", derandomize=True, database=None)
    _hsettings.register_profile("explore", derandomize=False)
    _hsettings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
except ImportError:
    pass


def make_image(label: int, rng: np.random.Generator, size: int | tuple[int, int] = 32) -> Image.Image:
    """A noisy image whose dominant colour is its class (learnable in a few steps); classes past the
    third repeat the colours a shade brighter. ``size``: a side, or (width, height)."""
    w, h = (size, size) if isinstance(size, int) else size
    a = rng.integers(0, 90, (h, w, 3)).astype(np.int16)
    channel = {0: 2, 1: 1, 2: 0}[label % 3]
    a[..., channel] += 120 + 10 * (label // 3)
    # a random bar, so that the images are not all alike
    r = rng.integers(0, h - 8)
    a[r : r + 6, :, :] += 40
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def make_folder(
    root: Path,
    per_class: dict[str, int],
    size: int | tuple[int, int] = 32,
    seed: int = 0,
    classes: list[str] = CLASSES,
    suffix: str = ".png",
) -> Path:
    """``root/SPLIT/CLASS/NNNN.png`` (or ``suffix``): ``per_class[SPLIT]`` images of each class."""
    rng = np.random.default_rng(seed)
    for split, n in per_class.items():
        for label, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                make_image(label, rng, size).save(d / f"{i:04d}{suffix}")
    return root


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Archives and decoded folders go to a temporary cache, not the user's ~/.cache/alexnet."""
    os.environ["ALEXNET_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ (60 per class) and val/ (20 per class), three colour classes, 32x32 PNGs."""
    return make_folder(tmp_path_factory.mktemp("tiny"), {"train": 60, "val": 20})


@pytest.fixture(scope="session")
def trained_run(tiny_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cifar_80sec run trained for 3 epochs on the tiny folder."""
    from alexnet import TrainConfig
    from alexnet.training import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = TrainConfig(
        model="cifar_80sec",
        data=str(tiny_folder),
        out=str(out),
        epochs=3,
        batch_size=32,
        lr=0.05,
        schedule="constant",
        model_options={"init": "torch"},
        workers=0,
    )
    train(cfg, progress=False, log=lambda s: None)
    return out


def real_data_root() -> Path | None:
    """$ALEXNET_DATA_ROOT when it holds the shared datasets (MNIST/raw, cifar10/)."""
    root = os.environ.get("ALEXNET_DATA_ROOT")
    return Path(root) if root and (Path(root) / "MNIST" / "raw").is_dir() else None
