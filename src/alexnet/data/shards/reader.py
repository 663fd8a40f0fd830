"""Reading JPEG shards back for training and evaluation: a split as a ``ShardDataset``, read by index.

Each image is read with one ``pread`` at the offset its shard's index gives (no tar parsing, no
sequential streaming), so the loader's order is exactly the other formats': one permutation per (seed,
epoch), dealt out to the processes of a torchrun job, resumable mid-epoch. The decoding runs in the
loader's worker processes (``--workers``; the GIL would serialise threads), a corrupt or truncated
member is skipped with one line naming its shard and key, and never ends the run.

For a ``shorter`` shard set with RandomResizedCrop the loader hands each worker the image's box along
with its index (drawn in the main process, from the batch's own generator, over the whole image), and
the worker returns the box resized to the crop size; otherwise the worker returns the central square
(for ``square`` shards, the image itself), and the crops are taken on the device as for every format.
Under the Prefetcher (training, evaluation) the workers write those pixels straight into the loader's
shared-memory batch slots (``decode_into``, ``data/slots.py``) instead of returning them.
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ...errors import UserError
from ..base import collate
from ..images import ImageError
from ..packed.manifest import check_manifest, check_stats
from . import codec
from .device_decode import collate_encoded
from .format import check_shards, member_key, read_index, read_shards_meta

MAX_OPEN = 64  # shard files a process keeps open


def check_shard_dataset(root: Path) -> dict[str, Any]:
    """dataset.json checked: the common fields, the shard list, the statistics."""
    meta = check_manifest(root, read_shards_meta(root))
    check_shards(root, meta)
    check_stats(root, meta)
    return meta


class ShardDataset(Dataset):
    """One split of a JPEG shard set; ``ds[i]`` is (uint8 (3, S, S) tensor, label), or (None, (where,
    why)) for an unusable member. ``ds[(i, top, left, h, w, out)]``: that box of the whole image,
    resized to out x out (RandomResizedCrop where the image is decoded)."""

    def __init__(self, root: Path, split: str, meta: dict[str, Any]) -> None:
        info = meta["splits"][split]
        self.root, self.split = root, split
        self.shards = [s["name"] for s in info["shards"]]
        parts = [read_index(root, s["name"], s["count"]) for s in info["shards"]]
        sid = [np.full(len(p), k, dtype=np.int64) for k, p in enumerate(parts)]
        # (shard, key, offset, size, label, height, width) per image, in shard order
        self.index = np.concatenate(
            [np.column_stack([s, p]) for s, p in zip(sid, parts)] or [np.zeros((0, 7), np.int64)]
        )
        self._check_index(meta)
        self.classes = list(meta["classes"])
        self.image_size = int(meta["image_size"])
        self.shape = meta["shape"]
        self.crops_at_decode = self.shape == "shorter"  # RandomResizedCrop over the whole image, in the workers
        self.meta = {**meta, "root": str(root)}
        self.skipped: list[tuple[str, str]] = []
        self._fds: OrderedDict[int, int] = OrderedDict()
        self._pid = os.getpid()
        self.encoded = False  # --decode gpu: items are the members' bytes, decoded on the device (device_decode)

    def _check_index(self, meta: dict[str, Any]) -> None:
        idx, n_classes = self.index, len(meta["classes"])
        if not len(idx):
            return
        sizes = np.array([s["bytes"] for s in meta["splits"][self.split]["shards"]], dtype=np.int64)
        ends = idx[:, 2] + idx[:, 3]
        bad = np.flatnonzero((idx[:, 2] < 0) | (idx[:, 3] <= 0) | (ends > sizes[idx[:, 0]]))
        if len(bad):
            s, key = int(idx[bad[0], 0]), int(idx[bad[0], 1])
            raise UserError(
                f"{self.root / self.shards[s]}: member {member_key(key)} lies past the shard's {sizes[s]:,} bytes "
                "in its index: the shard folder is damaged (`alexnet prepare --verify` lists every problem)"
            )
        lo, hi = int(idx[:, 4].min()), int(idx[:, 4].max())
        if lo < 0 or hi >= n_classes:
            raise UserError(f"{self.root}: the shards' labels are {lo}..{hi}, but dataset.json has {n_classes} classes")
        side = int(meta["image_size"])
        short = np.minimum(idx[:, 5], idx[:, 6])
        long = np.maximum(idx[:, 5], idx[:, 6])
        if (short != side).any() or (long > meta.get("max_aspect", 2.0) * side + 1).any():
            i = int(np.flatnonzero((short != side) | (long > meta.get("max_aspect", 2.0) * side + 1))[0])
            raise UserError(
                f"{self.root / self.shards[int(idx[i, 0])]}: member {member_key(int(idx[i, 1]))} is indexed as "
                f"{idx[i, 6]}x{idx[i, 5]}, not an image of shorter side {side}"
            )

    def __len__(self) -> int:
        return len(self.index)

    @property
    def labels(self) -> torch.Tensor:
        return torch.from_numpy(self.index[:, 4].copy())

    def image_sizes(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(heights, widths) of images ``idx`` as stored: what RandomResizedCrop's boxes are drawn in
        (for ``square`` shards, image_size squares)."""
        rows = self.index[idx.numpy()]
        return torch.from_numpy(rows[:, 5].copy()), torch.from_numpy(rows[:, 6].copy())

    def where(self, i: int) -> str:
        return f"{self.shards[int(self.index[i, 0])]}:{member_key(int(self.index[i, 1]))}"

    def _fd(self, shard: int) -> int:
        if os.getpid() != self._pid:  # a forked worker: its own descriptors (pread needs no shared offset,
            self._fds, self._pid = (
                OrderedDict(),
                os.getpid(),
            )  # but a cache shared with the parent would be closed twice)
        fd = self._fds.get(shard)
        if fd is None:
            fd = os.open(self.root / self.shards[shard], os.O_RDONLY)
            self._fds[shard] = fd
            if len(self._fds) > MAX_OPEN:
                os.close(self._fds.popitem(last=False)[1])
        else:
            self._fds.move_to_end(shard)
        return fd

    def read(self, i: int) -> bytes:
        shard, _, offset, size = (int(v) for v in self.index[i, :4])
        try:
            data = os.pread(self._fd(shard), size, offset)
        except FileNotFoundError:
            raise ImageError("its shard is missing") from None
        except OSError as e:
            raise ImageError(f"its shard cannot be read ({e.strerror})") from None
        if len(data) != size:
            raise ImageError(f"its shard is truncated ({len(data):,} of {size:,} bytes)")
        return data

    def decode(self, i: int) -> np.ndarray:
        """Image i as (H, W, 3) uint8, as stored."""
        return codec.decode(self.read(i), (int(self.index[i, 5]), int(self.index[i, 6])))

    def load(self, i: int) -> torch.Tensor:
        """Image i's central image_size square, (3, S, S) uint8, a view of the decoder's (S, S, 3) pixels
        (``collate`` stacks those channels-last; raises ``ImageError``)."""
        a = codec.centre_square(self.decode(i), self.image_size)
        return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)

    @property
    def collate(self) -> Callable[[list], Any]:
        """The loader's collate for this dataset's items (``data.base.collate``'s, or the bytes')."""
        return collate_encoded if self.encoded else collate

    def _encoded_item(self, i: int, box: tuple[int, ...] | None) -> tuple[tuple[bytes, str, Any, int], int]:
        """Member i's bytes, its name, its box and the side it decodes to, after checking its header."""
        data = self.read(i)
        codec.check_header(data, (int(self.index[i, 5]), int(self.index[i, 6])))
        size = box[4] if box is not None else self.image_size
        return (data, self.where(i), list(box[:4]) if box is not None else None, size), int(self.index[i, 4])

    def _resized_crop(self, i: int, top: int, left: int, h: int, w: int, out: int) -> torch.Tensor:
        """That box of image i resized to out x out: (3, out, out) uint8, channels-last in memory."""
        a = torch.from_numpy(self.decode(i)).permute(2, 0, 1)[None, :, top : top + h, left : left + w]
        # the box copied out channels-last first: torch's uint8 antialiased resize is then 1.8x as fast
        # (107 against 194 us for 190x280 -> 224, one thread), the same pixels, and comes out channels-last
        a = a.contiguous(memory_format=torch.channels_last)
        return F.interpolate(a, size=(out, out), mode="bilinear", antialias=True, align_corners=False)[0]

    def __getitem__(self, item: int | tuple[int, ...]) -> Any:
        i = item if isinstance(item, int) else item[0]
        try:
            if self.encoded:
                return self._encoded_item(i, None if isinstance(item, int) else item[1:])
            if isinstance(item, int):
                return self.load(i), int(self.index[i, 4])
            return self._resized_crop(*item), int(self.index[i, 4])
        except ImageError as e:
            return None, (self.where(i), str(e))

    def decode_into(self, item: int | tuple[int, ...], out: torch.Tensor) -> int:
        """``self[item]``'s pixels written into ``out`` ((S, S, 3) uint8, a loader's batch slot), and
        its label; raises ``ImageError``. A stored square decodes straight into the slot."""
        i = item if isinstance(item, int) else item[0]
        if not isinstance(item, int):
            out.copy_(self._resized_crop(*item).permute(1, 2, 0))
        elif (h := int(self.index[i, 5])) == out.shape[0] and (w := int(self.index[i, 6])) == out.shape[1]:
            codec.decode_into(self.read(i), (h, w), out.numpy())
        else:
            out.copy_(torch.from_numpy(codec.centre_square(self.decode(i), self.image_size)))
        return int(self.index[i, 4])

    def pick(self, idx: torch.Tensor) -> ShardDataset:
        """The images at ``idx`` (a subset or a held-out part), sharing the shards."""
        sub = copy.copy(self)
        sub.index = self.index[idx.numpy()]
        sub._fds, sub.skipped = OrderedDict(), []
        return sub

    def relabel(self, mapping: list[int], classes: list[str]) -> ShardDataset:
        out = copy.copy(self)
        out.index = self.index.copy()
        out.index[:, 4] = np.asarray(mapping, dtype=np.int64)[self.index[:, 4]]
        out.classes, out._fds = list(classes), OrderedDict()
        return out

    def __del__(self) -> None:
        if getattr(self, "_pid", None) == os.getpid():
            for fd in getattr(self, "_fds", {}).values():
                try:
                    os.close(fd)
                except OSError:
                    pass


def load_shards(root: str | os.PathLike[str], split: str = "train") -> ShardDataset:
    """A split of a JPEG shard set, checked (dataset.json, every shard's index against its size and the
    classes, the statistics) before any image is read."""
    root = Path(root)
    meta = check_shard_dataset(root)
    if split not in meta["splits"]:
        raise UserError(f"{root}: no {split} split")
    ds = ShardDataset(root, split, meta)
    if not len(ds):
        raise UserError(f"{root / 'dataset.json'}: splits.{split}.count is 0: a split with no images")
    return ds


def shard_stats(root: str | os.PathLike[str]) -> dict[str, Any]:
    """The training statistics ``prepare`` stored (as ``packed_stats``)."""
    root = Path(root)
    meta = check_shard_dataset(root)
    stats = dict(meta["stats"])
    s = meta["image_size"]
    stats["mean_image"] = np.fromfile(root / "mean_image.f32", dtype="<f4").reshape(s, s, 3)
    return stats


def shard_sums(task: tuple[str, str, int, int]) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Worker (prepare's statistics): one shard's count, per-pixel sum of the central squares (float64),
    sum of x x^T over their pixels (x in 0-1) and the per-channel sum, from the images as decoded."""
    root, name, count, size = task
    rows = read_index(Path(root), name, count)
    pixel_sum = np.zeros((size, size, 3), np.float64)
    moment = np.zeros((3, 3), np.float64)
    channel = np.zeros(3, np.float64)
    with open(Path(root) / name, "rb") as f:
        data = f.read()
    for _, offset, n, _, h, w in rows.tolist():
        sq = codec.centre_square(codec.decode(data[offset : offset + n], (h, w)), size)
        pixel_sum += sq
        flat = sq.reshape(-1, 3).astype(np.float64) / 255.0
        moment += flat.T @ flat
        channel += flat.sum(0) * 255.0
    return len(rows), pixel_sum, moment, channel
