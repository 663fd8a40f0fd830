"""``alexnet demo``: train on the bundled CIFAR-10 sample, evaluate, classify a few images.

Everything it needs ships inside the package (``alexnet/sample/cifar10-sample.tar.gz``, 9,000
CIFAR-10 images, and the ``demo`` recipe), so it runs offline from a wheel as from a clone, in under
a minute on a laptop CPU.
"""

from __future__ import annotations

import argparse
import fnmatch
import tarfile
import time
from importlib import resources
from pathlib import Path

from .config import TrainConfig, load_recipe
from .data.datasets import resolve_folder
from .errors import UserError
from .inference.classifier import Prediction, load
from .training import train

# package data, installed as a file with the wheel (a zipped install is not supported)
SAMPLE = Path(str(resources.files(__package__).joinpath("sample").joinpath("cifar10-sample.tar.gz")))


def sample_jpegs(split: str = "test", label: str = "*") -> list[tuple[str, bytes]]:
    """(class/file name, JPEG bytes) of the bundled sample's ``split``, sorted; ``label``: one class."""
    with tarfile.open(SAMPLE) as tf:
        found = [
            (m.name.split(f"/{split}/", 1)[1], tf.extractfile(m).read())  # type: ignore[union-attr]
            for m in tf.getmembers()
            if m.isfile()
            and m.name.endswith(".jpg")
            and f"/{split}/" in m.name
            and fnmatch.fnmatch(m.name.split(f"/{split}/", 1)[1].split("/")[0], label)
        ]
    return sorted(found)


def main(args: argparse.Namespace) -> int:
    if not SAMPLE.is_file():
        raise UserError(f"the demo needs {SAMPLE}, which ships inside the package; reinstall alexnet")
    data = resolve_folder(SAMPLE)
    out = Path(args.out)
    if (out / "last.pt").exists():
        out = out.with_name(f"{out.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    overrides = {"data": str(SAMPLE), "out": str(out)}
    if args.epochs:
        overrides["epochs"] = args.epochs
    cfg = TrainConfig().update(load_recipe("demo"), source="the shipped demo recipe")
    cfg = cfg.update(overrides, source="demo")
    print(f"== 1/3 training {cfg.model} on the CIFAR-10 sample ({data}) for {cfg.epochs} epochs")
    result = train(cfg)
    f = result.final
    assert f is not None
    print(
        f"\n== 2/3 held-out test images: top-1 error {f.top1_error:.2%}, top-5 error {f.top5_error:.2%} "
        f"({f.n:,} images; chance is 90% / 50%)"
    )
    samples = [
        next(p for p in sorted((data / "test" / c).iterdir()) if p.is_file())
        for c in ("airplane", "cat", "ship", "truck", "frog", "horse")
    ]
    print("\n== 3/3 classifying a few test images (true class = folder name)")
    clf = load(out)
    for p in clf.predict_paths(samples, top_k=5):
        assert isinstance(p, Prediction)
        top = ", ".join(f"{label} {prob:.0%}" for label, prob in zip(p.labels, p.probs))
        print(f"  {Path(p.path).parent.name + '/' + Path(p.path).name:<22} -> {top}")
    print(
        f"\nresults in {out}/: curves.png (loss/error per epoch), confusion.png, metrics.csv, "
        f"config.toml, best.pt, last.pt"
    )
    print("next:")
    print(f"  .venv/bin/alexnet predict {out} YOUR_PHOTO.jpg")
    print(f"  .venv/bin/alexnet evaluate {out} --data {SAMPLE}")
    print("  .venv/bin/alexnet models alexnet")
    print("  .venv/bin/alexnet train --recipe lenet5_mnist --data mnist:../shared/data --out runs/lenet5")
    return 0
