"""The packed dataset format: every image decoded once, at the paper's 256x256, into one flat
uint8 file per split that training reads back with ``np.memmap``.

Why raw pixels rather than JPEG bytes with an index: a training batch then costs a memory copy
and a crop, not 128 JPEG decodes, which is what a 2-core machine (or a GPU fed by a few cores)
runs out of first. The price is disk: 196,608 bytes per 256x256 RGB image (ImageNet's 1.28M
training images: 252 GB), against about 110 KB as JPEG. See the README for measured figures.

Layout of a packed folder (format version 1; all binary data little-endian, C order)::

    dataset.json            what follows, the class list, the statistics, skipped files
    {split}_images.u8       N x S x S x C uint8 (NHWC), one image after another
    {split}_labels.i32      N int32 labels
    {split}_status.u8       N bytes: 0 not yet written, 1 written, 2 skipped (unusable file)
    {split}_files.json      the source files in the order they are stored, with labels
    mean_image.f32          S x S x C float32, the per-pixel mean over the training images (0-255)

The status file makes ``prepare`` resumable: a rerun writes only what is still 0. When every
image is done, the slots of skipped files are filled with the last images of the split and the
files truncated, so a finished split has no holes and N is its number of usable images.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import UserError

FORMAT = "alexnet-packed"
VERSION = 1
PENDING, WRITTEN, SKIPPED = 0, 1, 2


def is_packed(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / "dataset.json").is_file()


def read_meta(root: str | os.PathLike[str], formats: tuple[str, ...] = (FORMAT,)) -> dict[str, Any]:
    """``dataset.json``, checked to be JSON, an object, one of ``formats`` and a version this reads."""
    p = Path(root) / "dataset.json"
    try:
        meta = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise UserError(f"{p}: not a readable packed dataset ({str(e)[:200]})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{p}: the top level: must be an object, not a JSON {type(meta).__name__}")
    if meta.get("format") not in formats:
        raise UserError(f"{p}: format: not an {' or '.join(formats)} dataset")
    version = meta.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise UserError(f"{p}: version: must be a whole number from 1, not {version!r}"[:200])
    if version > VERSION:  # both formats are at version 1
        raise UserError(f"{p}: version: format version {version} is newer than this version reads ({VERSION})")
    return meta


@dataclass
class SplitFiles:
    """The memory-mapped arrays of one split."""

    images: np.memmap  # N, S, S, C uint8
    labels: np.memmap  # N int32
    status: np.memmap  # N uint8

    @classmethod
    def open(cls, root: Path, split: str, n: int, size: int, channels: int, mode: str) -> SplitFiles:
        """mode "r" reads, "c" reads copy-on-write (writable in memory, never written back), "r+" updates,
        "w+" creates the files at their full size (sparse until written)."""
        shape = (n, size, size, channels)
        return cls(
            np.memmap(root / f"{split}_images.u8", dtype=np.uint8, mode=mode, shape=shape),  # type: ignore[call-overload]
            np.memmap(root / f"{split}_labels.i32", dtype=np.dtype("<i4"), mode=mode, shape=(n,)),  # type: ignore[call-overload]
            np.memmap(root / f"{split}_status.u8", dtype=np.uint8, mode=mode, shape=(n,)),  # type: ignore[call-overload]
        )

    def flush(self) -> None:
        # image bytes reach the disk before the status bytes that claim them
        self.images.flush()
        self.labels.flush()
        self.status.flush()
