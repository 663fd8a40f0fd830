"""A packed dataset checked before it is trusted: ``dataset.json`` against its schema (types, ranges,
required keys), each split's files against their counts and shape, the labels against the classes,
the statistics against the channels. Every reader opens a packed dataset through ``load_packed`` and
``packed_stats`` (training, evaluation, bench, features, neighbours, the experiments), which call
these checks; each problem is one ``UserError`` line naming the file and the field, before any model
is built.

Checked at every open (cheap: the manifest, file sizes from ``stat``, one pass over the labels, 4
bytes an image): everything below. Not checked at open: the pixels themselves (reading 252 GB to open
ImageNet is not cheap); a pixel that changed on disk is what a checksum of the files would catch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import UserError

MAX_SIZE = 4096  # an image side: 4096^2 x 3 is 50 MB an image, far past any network's input
MAX_CLASSES = 1_000_000


def _bad(path: Path, field: str, why: str) -> UserError:
    return UserError(f"{path}: {field}: {why}")


def _int(meta: dict[str, Any], key: str, path: Path, lo: int, hi: int, where: str = "") -> int:
    v = meta.get(key)
    name = f"{where}{key}"
    if isinstance(v, bool) or not isinstance(v, int):
        raise _bad(path, name, f"must be a whole number, not {type(v).__name__} {v!r}"[:200])
    if not lo <= v <= hi:
        raise _bad(path, name, f"must be in {lo}..{hi:,}, not {v:,}")
    return v


def _numbers(v: Any, n: int, path: Path, name: str, positive: bool = False) -> None:
    if not isinstance(v, list) or len(v) != n:
        raise _bad(path, name, f"must be a list of {n} numbers")
    for x in v:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or (positive and x <= 0):
            raise _bad(path, name, f"holds {x!r}, not a finite{' positive' if positive else ''} number")


def check_manifest(root: Path, meta: Any) -> dict[str, Any]:
    """``dataset.json``'s schema; returns it. A finished dataset has every key its readers use."""
    path = root / "dataset.json"
    if not isinstance(meta, dict):
        raise _bad(path, "the top level", f"must be an object, not a JSON {type(meta).__name__}")
    if meta.get("complete") is not True:
        raise _bad(path, "complete", "the packed dataset is incomplete; rerun `alexnet prepare` to finish it")
    _int(meta, "image_size", path, 1, MAX_SIZE)
    channels = meta.get("channels")
    if channels not in (1, 3) or isinstance(channels, bool):
        raise _bad(path, "channels", f"must be 1 or 3, not {channels!r}")
    for key, want in (("layout", "NHWC"), ("dtype", "uint8")):
        if meta.get(key, want) != want:
            raise _bad(path, key, f"must be {want!r}, not {meta.get(key)!r}")
    classes = meta.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
        raise _bad(path, "classes", "must be a non-empty list of class names")
    if len(classes) > MAX_CLASSES or len(set(classes)) != len(classes):
        raise _bad(path, "classes", "must be distinct names, at most 1,000,000 of them")
    names = meta.get("class_names", classes)
    if not isinstance(names, list) or len(names) != len(classes) or not all(isinstance(c, str) for c in names):
        raise _bad(path, "class_names", f"must be a list of {len(classes)} names, one per class")
    splits = meta.get("splits")
    if not isinstance(splits, dict) or "train" not in splits:
        raise _bad(path, "splits", "must be an object with at least a train split")
    for name, info in splits.items():
        if name not in ("train", "val") or not isinstance(info, dict):
            raise _bad(path, f"splits.{name}", "a split is train or val, each an object")
        _int(info, "count", path, 0, 2**40, where=f"splits.{name}.")
        if not isinstance(info.get("skipped", []), list):
            raise _bad(path, f"splits.{name}.skipped", "must be a list")
    return meta


def check_dataset(root: Path, meta: dict[str, Any], split: str) -> int:
    """Every split's files and the statistics (a damaged split is a damaged dataset, whichever one is
    read), and that ``split`` has images. Returns its count."""
    path = root / "dataset.json"
    if split not in meta["splits"]:
        raise UserError(f"{root}: no {split} split")
    for name in meta["splits"]:
        check_split(root, meta, name)
    check_stats(root, meta)
    n = meta["splits"][split]["count"]
    if n == 0:
        raise _bad(path, f"splits.{split}.count", "is 0: a split with no images cannot train or evaluate")
    return n


def check_split(root: Path, meta: dict[str, Any], split: str) -> int:
    """The split's files: sizes against count x shape, labels within the classes. Returns the count."""
    info = meta["splits"][split]
    n, size, channels = info["count"], meta["image_size"], meta["channels"]
    for suffix, per in (("images.u8", size * size * channels), ("labels.i32", 4), ("status.u8", 1)):
        f = root / f"{split}_{suffix}"
        try:
            actual = f.stat().st_size
        except OSError as e:
            raise UserError(f"{f}: cannot be read ({e.strerror}); the packed dataset is damaged") from None
        if actual != n * per:
            raise UserError(
                f"{f}: {actual:,} bytes, but dataset.json's splits.{split}.count ({n:,}) x {per:,} bytes an image "
                f"is {n * per:,}: the dataset is damaged or its dataset.json edited (`alexnet prepare` rebuilds it)"
            )
    labels = np.fromfile(root / f"{split}_labels.i32", dtype="<i4")
    if len(labels):
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= len(meta["classes"]):
            raise UserError(
                f"{root / f'{split}_labels.i32'}: labels {lo}..{hi}, but dataset.json's classes has "
                f"{len(meta['classes'])} (labels 0..{len(meta['classes']) - 1})"
            )
    return n


def check_stats(root: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The training statistics: per-channel mean and std, the RGB eigen-decomposition, the mean image file."""
    path = root / "dataset.json"
    stats = meta.get("stats")
    if not isinstance(stats, dict):
        raise _bad(path, "stats", "missing: the training statistics (`alexnet prepare` writes them)")
    c = meta["channels"]
    _numbers(stats.get("channel_mean"), c, path, "stats.channel_mean")
    _numbers(stats.get("channel_std"), c, path, "stats.channel_std", positive=True)
    if c == 3:
        _numbers(stats.get("eigval"), 3, path, "stats.eigval")
        vec = stats.get("eigvec")
        if not isinstance(vec, list) or len(vec) != 3:
            raise _bad(path, "stats.eigvec", "must be a 3x3 list")
        for row in vec:
            _numbers(row, 3, path, "stats.eigvec")
    f = root / "mean_image.f32"
    want = meta["image_size"] ** 2 * c * 4
    try:
        actual = f.stat().st_size
    except OSError as e:
        raise UserError(f"{f}: cannot be read ({e.strerror}); the packed dataset is damaged") from None
    if actual != want:
        raise UserError(f"{f}: {actual:,} bytes, not the {want:,} of a {meta['image_size']}^2 x {c} float32 image")
    return stats
