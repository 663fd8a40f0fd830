"""Batches of uint8 images and labels, in a reproducible order.

In-memory datasets are indexed directly (no worker processes, no per-image Python work); folder
datasets go through a ``DataLoader`` with workers that decode JPEGs. Either way the order of an
epoch depends only on (seed, epoch), so a run resumed at an epoch boundary sees the same batches.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import printable
from .base import InMemoryDataset, collate
from .slots import IntoSlots, SlotRing
from .transforms import rrc_boxes

PREFETCH = 4  # batches each decoding worker prepares ahead


@dataclass(frozen=True)
class ResizedCrops:
    """RandomResizedCrop's parameters, for a loader that draws each batch's boxes."""

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    size: int = 224  # the crops' side, where a dataset crops as it decodes


class BatchLoader:
    """Iterate ``(images uint8 (N, C, H, W), labels (N,))`` batches of a dataset.

    Usage: ``loader = BatchLoader(ds, 128, shuffle=True, seed=0); loader.set_epoch(e); for x, y in loader: ...``
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        workers: int = 2,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        pad_shards: bool = True,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.seed, self.workers, self.drop_last = seed, workers, drop_last
        # Training pads the shards to equal length (every process takes the same number of steps);
        # evaluation does not, so that every image is counted exactly once.
        self.rank, self.world_size, self.pad_shards = rank, world_size, pad_shards
        self.epoch = 0
        self.start_batch = 0  # batches of this epoch already done (a run resumed mid-epoch)
        self.skipped: list[tuple[str, str]] = []
        self.crops: ResizedCrops | None = None  # set by training: draw RandomResizedCrop boxes per batch
        self._order: tuple[tuple[int, ...], torch.Tensor] | None = None  # made once per epoch
        # A consumer that keeps each batch for at most ``hold`` further ones (the Prefetcher) sets it: a
        # dataset that can (``decode_into``) is then decoded straight into a ring of shared-memory
        # slots (``slots.py``), pinned for the GPU when ``pin_slots``; 0: fresh tensors every batch.
        self.hold = 0
        self.pin_slots = False
        self._ring: SlotRing | None = None
        self._next_slot = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's order; ``start_batch`` skips the batches a resumed run already did."""
        self.epoch, self.start_batch = epoch, start_batch

    def _shard_size(self) -> int:
        n = len(self.dataset)  # type: ignore[arg-type]
        return -(-n // self.world_size) if self.pad_shards else len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        n = self._shard_size()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_images(self) -> int:
        n = self._shard_size()
        return (n // self.batch_size) * self.batch_size if self.drop_last else n

    def order(self) -> torch.Tensor:
        """This process's indices for the current epoch (made once per epoch).

        One permutation per (seed, epoch), shared by every process, padded by wrapping around to a
        multiple of ``world_size`` and dealt out as ``DistributedSampler`` does: process r takes
        positions r, r + world_size, ...
        """
        n = len(self.dataset)  # type: ignore[arg-type]
        key = (self.epoch, self.seed, self.rank, self.world_size, n, int(self.shuffle), int(self.pad_shards))
        if self._order is not None and self._order[0] == key:
            return self._order[1]
        if self.shuffle:
            idx = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 100003 + self.epoch))
        else:
            idx = torch.arange(n)
        if self.world_size > 1:
            total = -(-n // self.world_size) * self.world_size
            if self.pad_shards and total > n:
                idx = torch.cat([idx, idx[: total - n]])
            idx = idx[self.rank :: self.world_size]
        self._order = (key, idx)
        return idx

    def boxes_for(self, b: int, size: int) -> torch.Tensor:
        """RandomResizedCrop's boxes ``[top, left, h, w]`` for batch ``b`` of the current epoch, within
        each image's whole stored size for a dataset that crops where it decodes (its
        ``image_sizes(indices)``), else within the size x size squares the batch is resized to.

        Drawn from a generator seeded by (seed, epoch, process, batch) alone: a run resumed mid-epoch
        draws the same boxes without any saved state, the draws never wait for a device, and the
        workers that crop where they decode get the same boxes the batch path would use."""
        assert self.crops is not None
        idx = self.order()[b * self.batch_size : (b + 1) * self.batch_size]
        decoded = getattr(self.dataset, "crops_at_decode", False)  # else boxes of the resized squares
        sizes = getattr(self.dataset, "image_sizes", None) if decoded else None
        if sizes is not None:
            h, w = sizes(idx)
        else:
            h = w = torch.full((len(idx),), size, dtype=torch.long)
        key = hashlib.blake2b(f"rrc {self.seed} {self.epoch} {self.rank} {b}".encode(), digest_size=8).digest()
        gen = torch.Generator().manual_seed(int.from_bytes(key, "little") >> 1)
        return rrc_boxes(h, w, self.crops.scale, self.crops.ratio, gen)

    def batch_indices(self) -> list[torch.Tensor]:
        """The dataset indices of each remaining batch of the current epoch (from ``start_batch``)."""
        idx = self.order()
        return [idx[b * self.batch_size : (b + 1) * self.batch_size] for b in range(self.start_batch, len(self))]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if isinstance(self.dataset, InMemoryDataset):
            for i in self.batch_indices():
                yield self.dataset.images[i], self.dataset.labels[i]
            return
        batches: list[list[Any]] = [i.tolist() for i in self.batch_indices()]
        crop = self.crops.size if self.crops is not None and getattr(self.dataset, "crops_at_decode", False) else 0
        if crop:
            # RandomResizedCrop where the image is decoded: each index goes to the worker with its box
            batches = [
                [(i, *box, crop) for i, box in zip(ids, self.boxes_for(self.start_batch + b, 0).tolist())]
                for b, ids in enumerate(batches)
            ]
        if self.hold and hasattr(self.dataset, "decode_into") and not getattr(self.dataset, "encoded", False):
            yield from self._iter_slots(batches, crop or int(self.dataset.image_size))  # type: ignore[attr-defined]
            return
        dl = DataLoader(
            self.dataset,
            batch_sampler=batches,
            num_workers=self.workers,
            collate_fn=getattr(self.dataset, "collate", collate),
            persistent_workers=False,
            prefetch_factor=PREFETCH if self.workers else None,
        )
        for x, y, errors in dl:
            for path, why in errors:
                self.skip(path, why)
            if hasattr(x, "report"):  # decoded on the device later (--decode gpu): it reports there
                x.report = self.skip
            if len(y):
                yield x, y

    def slot_ring(self, shape: tuple[int, ...]) -> SlotRing:
        """The ring the workers decode this loader's batches into (made once, kept across passes): enough
        slots for what the workers may be handed (``workers * PREFETCH`` batches ahead of the one the
        loader last yielded) plus the ``hold`` batches the consumer may still read."""
        count = max(1, self.workers) * PREFETCH + self.hold + 1
        if self._ring is None or not self._ring.fits(count, self.batch_size, shape):
            if self._ring is not None:
                self._ring.close()
            self._ring = SlotRing(count, self.batch_size, shape)
            if self.pin_slots:
                self._ring.pin()
        return self._ring

    def _iter_slots(self, batches: list[list[Any]], side: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The workers decode batch b (side x side images) straight into slot ``b % count`` of the ring;
        the batch yielded is a view of that slot, intact until ``hold`` further batches have been yielded."""
        ring = self.slot_ring((side, side, 3))
        # the slots continue from the last pass's: its last batches may still be read (or, on a GPU,
        # copied) while the workers of this one start
        first, self._next_slot = self._next_slot, self._next_slot + len(batches)
        keyed = [[((first + b) % ring.count, k, key) for k, key in enumerate(ids)] for b, ids in enumerate(batches)]
        into = IntoSlots(self.dataset, ring)
        dl = DataLoader(
            into,
            batch_sampler=keyed,
            num_workers=self.workers,
            collate_fn=into.collate,
            persistent_workers=False,
            prefetch_factor=PREFETCH if self.workers else None,
        )
        for slot, n, errors in dl:
            for path, why in errors:
                self.skip(path, why)
            if n:
                yield ring.images[slot, :n].permute(0, 3, 1, 2), ring.labels[slot, :n]

    def skip(self, path: str, why: str) -> None:
        """An image the batch goes without: said once, in one line, and kept in ``skipped``."""
        if hasattr(self.dataset, "skipped") and (path, why) not in self.skipped:
            self.skipped.append((path, why))
            print(f"warning: skipped {printable(path)}: {printable(why)}", file=sys.stderr)
