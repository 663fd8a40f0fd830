"""The JPEG shard format: a dataset as plain tar files in WebDataset's layout, with an index for random
access (``alexnet prepare SRC DST --format jpeg``).

Why JPEG shards beside the raw format (``data/packed``): ImageNet's 1.28M training images are 252 GB as
raw 256x256 pixels, more than a training node's page cache, and at a GPU's 20,000 img/s they would need
4-5 GB/s from the disk; as JPEG at quality 95 they are 5-9x smaller, fit in memory, and a few cores
decode them at that rate. The ``shorter`` shape also keeps the whole image (shorter side 256, aspect
kept), which RandomResizedCrop needs.

Layout of a shard folder (format version 1; binary data little-endian)::

    dataset.json              format, settings, classes, every shard with its count, bytes and sha256,
                              skipped files with reasons, the training statistics
    {split}-{k:06d}.tar       a plain (ustar) tar: per image KEY.jpg then KEY.cls (the label as text),
                              KEY the image's position in the split's seeded order, 9 digits;
                              readable by ``webdataset``, ``tar`` and anything that reads WebDataset
    {split}-{k:06d}.idx       per image of that shard: key, byte offset of the JPEG in the tar, its
                              length, label, height, width (int64 x 6)
    {split}_files.json        the source files in the seeded order (what each key is), with labels
    mean_image.f32            S x S x 3 float32, the per-pixel mean of the training images' central
                              squares as decoded (0-255)

Images are in a seeded random order across shards (no shard holds one class), so a shard copied or
read alone is a fair sample. Training reads by index (``reader.py``): the same global permutation per
(seed, epoch) as every other format, the same per-process shares, bitwise mid-epoch resume.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import UserError
from ..packed.format import VERSION, read_meta
from ..packed.manifest import _bad, _int

FORMAT = "alexnet-jpeg-shards"
SHAPES = ("square", "shorter")
MAX_ASPECT = 2.0  # `shorter`: the longer side at most this times the shorter (a panorama is centre-cut)
SHARD_SIZE = 2500  # images per shard: ImageNet's training set in 513 shards of about 70 MB at q95
INDEX_COLUMNS = ("key", "offset", "size", "label", "height", "width")
KEY_DIGITS = 9

__all__ = ["FORMAT", "SHAPES", "VERSION", "is_shards", "read_shards_meta", "shard_name", "read_index"]


def shard_name(split: str, k: int) -> str:
    return f"{split}-{k:06d}.tar"


def index_name(shard: str) -> str:
    return shard[: -len(".tar")] + ".idx"


def member_key(position: int) -> str:
    return f"{position:0{KEY_DIGITS}d}"


def is_shards(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a JPEG shard dataset (its dataset.json says so)."""
    p = Path(path) / "dataset.json"
    try:
        return p.is_file() and json.loads(p.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def read_shards_meta(root: str | os.PathLike[str]) -> dict[str, Any]:
    return read_meta(root, (FORMAT,))


def read_index(root: Path, shard: str, count: int) -> np.ndarray:
    """A shard's index, (count, 6) int64; one line naming the file when it does not hold ``count`` rows."""
    f = root / index_name(shard)
    try:
        rows = np.fromfile(f, dtype="<i8")
    except OSError as e:
        raise UserError(f"{f}: cannot be read ({e.strerror}); copy the shard's .idx with it") from None
    if rows.size != count * len(INDEX_COLUMNS):
        raise UserError(
            f"{f}: {rows.size // len(INDEX_COLUMNS):,} images, but dataset.json says {count:,} for {shard}: "
            "the shard folder is damaged or its dataset.json edited (`alexnet prepare --verify` checks it)"
        )
    return rows.reshape(count, len(INDEX_COLUMNS))


def check_shards(root: Path, meta: dict[str, Any]) -> None:
    """The shard-specific fields of a finished shard dataset (the common ones are ``check_manifest``'s):
    the settings, and per split a list of shards whose counts add up to the split's count."""
    path = root / "dataset.json"
    if meta.get("shape") not in SHAPES:
        raise _bad(path, "shape", f"must be one of {', '.join(SHAPES)}, not {meta.get('shape')!r}"[:200])
    _int(meta, "quality", path, 1, 100)
    for name, info in meta["splits"].items():
        shards = info.get("shards")
        if not isinstance(shards, list):
            raise _bad(path, f"splits.{name}.shards", "must be a list of shards")
        total = 0
        for k, s in enumerate(shards):
            where = f"splits.{name}.shards[{k}]."
            if not isinstance(s, dict):
                raise _bad(path, where[:-1], "must be an object")
            if s.get("name") != shard_name(name, k):
                raise _bad(path, f"{where}name", f"must be {shard_name(name, k)!r}, not {s.get('name')!r}"[:200])
            total += _int(s, "count", path, 0, 2**31, where=where)
            _int(s, "bytes", path, 0, 2**50, where=where)
            sha = s.get("sha256")
            if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
                raise _bad(path, f"{where}sha256", "must be 64 hexadecimal digits")
        if total != info["count"]:
            raise _bad(path, f"splits.{name}.count", f"is {info['count']:,}, but its shards hold {total:,} images")
