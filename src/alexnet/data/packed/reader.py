"""Reading a packed dataset back: a split as a memory-mapped ``InMemoryDataset``, and the training-set
statistics ``prepare`` stored beside it. The format is described in ``format.py``; ``writer.py``
writes it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..base import InMemoryDataset
from ..shards.format import is_shards
from ..shards.reader import shard_stats
from .format import SplitFiles, is_packed, read_meta
from .manifest import check_dataset, check_manifest, check_stats

__all__ = ["is_packed", "load_packed", "packed_stats"]


def load_packed(root: str | os.PathLike[str], split: str = "train") -> InMemoryDataset:
    """A packed split as an ``InMemoryDataset`` whose images are a memory map (read on demand).

    ``images`` is an (N, C, S, S) view of the NHWC file, so batches gathered from it come out
    channels-last, as the convolutions want them.
    """
    root = Path(root)
    meta = check_manifest(root, read_meta(root))  # one line naming the file and field, before any model
    n = check_dataset(root, meta, split)
    files = SplitFiles.open(root, split, n, meta["image_size"], meta["channels"], "c")
    images = torch.from_numpy(files.images).permute(0, 3, 1, 2)
    labels = torch.from_numpy(np.asarray(files.labels, dtype=np.int64))
    ds = InMemoryDataset(images, labels, list(meta["classes"]))
    ds.meta = {**meta, "root": str(root)}  # type: ignore[attr-defined]
    ds.mapped = files.images  # type: ignore[attr-defined]  # the memory map itself: read-ahead hints
    return ds


def packed_stats(root: str | os.PathLike[str]) -> dict[str, Any]:
    """The training-set statistics stored by ``prepare``: channel mean/std, mean image, PCA of RGB (of a
    raw packed dataset or of JPEG shards)."""
    root = Path(root)
    if is_shards(root):
        return shard_stats(root)
    meta = check_manifest(root, read_meta(root))
    stats = dict(check_stats(root, meta))
    s, c = meta["image_size"], meta["channels"]
    stats["mean_image"] = np.fromfile(root / "mean_image.f32", dtype="<f4").reshape(s, s, c)
    return stats
