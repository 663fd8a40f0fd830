"""Batch slots in shared memory that the loader's worker processes decode straight into.

A ``DataLoader`` worker normally decodes each image into a fresh array, then stacks the batch into a
fresh block of shared memory, which the main process maps and, on a GPU, copies once more into pinned
memory. Every one of those blocks is new memory: its page faults and zeroing cost about as much as the
stack itself (12.6 ms of a 128-image 256x256 batch against 2.2 ms to copy the same batch into memory
already mapped; and the fresh decode buffers another few ms; measured on the 2-core dev machine,
``docs/data.md``). A ``SlotRing`` is allocated once: ``count`` batches of shared memory that every
worker (forked, or handed the tensors) writes into in place, pinned once with ``cudaHostRegister`` when
the batches go to a GPU, so the copy to the device reads the worker's own pixels.

The slots are reused in turn, so a batch is valid only for a while: the loader assigns batch b of a
pass to slot ``b % count`` and sizes ``count`` so that a batch stays intact until ``hold`` more have
been yielded (``BatchLoader.hold``, set by the ``Prefetcher`` to what it keeps in flight), whatever the
workers have been handed meanwhile (``workers * prefetch_factor`` batches at most).
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
from typing import Any

import torch
from torch.utils.data import Dataset

from .images import ImageError


class SlotRing:
    """``count`` batches of ``batch`` uint8 images of ``shape`` (H, W, C) and their labels, in shared
    memory. ``images[s, k]`` is image k of slot s, channels-last."""

    def __init__(self, count: int, batch: int, shape: tuple[int, ...]) -> None:
        self.count, self.batch, self.shape = count, batch, tuple(shape)
        self.images = torch.empty((count, batch, *shape), dtype=torch.uint8).share_memory_()
        self.labels = torch.empty((count, batch), dtype=torch.long).share_memory_()
        self._registered: list[int] = []

    def fits(self, count: int, batch: int, shape: tuple[int, ...]) -> bool:
        return self.count >= count and self.batch == batch and self.shape == tuple(shape)

    def pin(self) -> bool:
        """Page-lock the slots for the GPU in place (``cudaHostRegister``), so that a non-blocking copy
        out of them is asynchronous; False where that is refused (the caller then copies into pinned
        memory itself, as for any batch)."""
        if self._registered:
            return True
        if not torch.cuda.is_available():
            return False
        cudart = torch.cuda.cudart()
        done: list[int] = []
        for t in (self.images, self.labels):
            ptr, size = t.data_ptr(), t.untyped_storage().nbytes()
            if int(cudart.cudaHostRegister(ptr, size, 0)) != 0:  # cudaHostRegisterDefault
                for p in done:
                    cudart.cudaHostUnregister(p)
                return False
            done.append(ptr)
        self._registered = done
        if not self.children_can_write():
            # a driver that hides page-locked memory from forked children (MADV_DONTFORK, as some do
            # for their own pinned allocations) would make every worker crash on its first image
            self.close()
            return False
        return True

    def children_can_write(self) -> bool:
        """Whether a forked child (a loader's worker) can write the slots: one fork, writing the first
        and last byte of both tensors in place, checked before the ring is used page-locked."""
        spans = [(t.data_ptr(), t.untyped_storage().nbytes()) for t in (self.images, self.labels)]
        pid = os.fork()
        if pid == 0:  # the child: no torch, no Python objects beyond these, then out at once
            try:
                faulthandler.disable()  # a crash here is the answer, not a report (pytest enables it)
                for ptr, size in spans:
                    for at in (ptr, ptr + size - 1):
                        ctypes.memmove(at, at, 1)
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0

    def close(self) -> None:
        """Unpin (the shared memory itself goes with the last tensor that maps it)."""
        if self._registered and torch.cuda.is_available():
            cudart = torch.cuda.cudart()
            for p in self._registered:
                cudart.cudaHostUnregister(p)
        self._registered = []

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: CUDA may be gone already
            pass


class IntoSlots(Dataset):
    """``dataset`` read into ``ring``: item ``(slot, position, key)`` decodes the dataset's ``key`` (an
    index, or an index with its RandomResizedCrop box) into ``ring.images[slot, position]`` with
    ``dataset.decode_into`` and its label into ``ring.labels``; ``collate`` (run in the worker, once
    per batch) closes the gaps unusable images left and returns ``(slot, count, [(where, why), ...])``:
    a few integers and strings between the processes instead of the pixels."""

    def __init__(self, dataset: Any, ring: SlotRing) -> None:
        self.dataset, self.ring = dataset, ring

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int, Any]) -> tuple[int, int, tuple[str, str] | None]:
        slot, pos, key = item
        try:
            self.ring.labels[slot, pos] = self.dataset.decode_into(key, self.ring.images[slot, pos])
            return slot, pos, None
        except ImageError as e:
            i = key if isinstance(key, int) else key[0]
            return slot, pos, (self.dataset.where(i), str(e))

    def collate(self, batch: list[tuple[int, int, tuple[str, str] | None]]) -> tuple[int, int, list[tuple[str, str]]]:
        slot = batch[0][0]
        good = [pos for _, pos, err in batch if err is None]
        for k, pos in enumerate(good):  # in order: an unusable image's place goes to the next good one
            if k != pos:
                self.ring.images[slot, k] = self.ring.images[slot, pos]
                self.ring.labels[slot, k] = self.ring.labels[slot, pos]
        return slot, len(good), [err for _, _, err in batch if err is not None]
