"""The input pipeline of training and evaluation: batches gathered ahead of the step.

``Prefetcher`` turns a ``BatchLoader`` into batches on the device, running ahead of the consumer:

1. **gather** (background threads): the images of batch b are copied from the dataset (an
   in-memory tensor or a packed dataset's memory map, read with ``numpy.take``, which releases the
   GIL) into slot ``b % depth`` of a small ring of reusable host buffers, pinned when the device is
   a GPU (pinning once, not per batch: pinning is slow). Datasets decoded on the fly come from the
   ``DataLoader`` workers instead, through one background thread; JPEG shards are decoded by those
   workers straight into a ring of shared-memory slots (``slots.py``), pinned in place for a GPU, which
   this Prefetcher tells the loader how long to keep each batch intact (``BatchLoader.hold``).
2. **copy** (CUDA): each slot is copied to the device on a side stream (``non_blocking``, which is
   asynchronous only from pinned memory); the step's stream waits on that copy's event, and the
   slot is refilled only after the event has completed.
3. **transform** (the caller's stream): crops, flips, PCA noise and normalisation run on the device
   on whole uint8 batches (``transforms.py``), in the main thread, in batch order, so that the
   augmentation's random generator draws exactly what it drew before (exact resume).

On the CPU the same code runs without the copy: the threads still overlap the gather (and the
page faults of a memory-mapped dataset) with the step. The order of the batches is the loader's
(per seed, epoch and process), so sharding and mid-epoch resume are unchanged.
"""

from __future__ import annotations

import collections
import functools
import mmap
import os
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from .base import InMemoryDataset
from .loader import BatchLoader
from .shards.device_decode import Encoded


def gather_threads() -> int:
    """Threads that gather batches from an in-memory or memory-mapped dataset: one per core, at most 8
    (numpy's take releases the GIL; page faults of a cold memory map wait on the disk, not a core).
    Not tied to ``--workers``, which is the number of decoding processes for folders."""
    return max(2, min(8, os.cpu_count() or 2))


def advise_rows(array: Any, idx: np.ndarray) -> None:
    """Ask the kernel to read the rows ``idx`` of a memory-mapped (N, ...) array ahead (MADV_WILLNEED),
    so that a batch's page faults overlap the step before it; a no-op for an array in memory."""
    mm = getattr(array, "_mmap", None)  # numpy.memmap's mapping
    if mm is None or not hasattr(mm, "madvise") or not len(idx):
        return
    row = array.strides[0]
    page = mmap.PAGESIZE
    offset = getattr(array, "offset", 0)
    for i in np.unique(idx):
        start = offset + int(i) * row
        aligned = start - start % page
        try:
            mm.madvise(mmap.MADV_WILLNEED, aligned, start + row - aligned)
        except (OSError, ValueError):  # past the end, or not supported: only a hint
            return


COPY_LAG = 2  # CUDA: batches whose copies to the device may still be in flight when the next is taken


def _pinned(t: Any) -> bool:
    is_pinned = getattr(t, "is_pinned", None)
    return bool(is_pinned is not None and is_pinned())


@functools.cache
def side_stream(device: torch.device) -> Any:
    """One side stream per device for the copies, shared by every Prefetcher (training and each
    evaluation): a new stream per evaluation would be created, and never freed, at every epoch."""
    return torch.cuda.Stream(device)


class Prefetcher:
    """Iterate ``(images uint8 on the device, labels on the device)`` of ``loader``'s current epoch.

    Usage: ``for x, y in Prefetcher(loader, device): step(augment(x), y)``. ``depth`` batches are in
    flight at most; ``threads`` gather them (in-memory datasets).
    """

    def __init__(self, loader: BatchLoader, device: torch.device, *, depth: int = 3, threads: int = 1) -> None:
        self.loader, self.device = loader, torch.device(device)
        self.depth, self.threads = max(1, depth), max(1, threads)
        self.cuda = self.device.type == "cuda"
        self.pin = self.cuda  # pinned host buffers: asynchronous copies
        self.stream = side_stream(self.device) if self.cuda else None
        self._slots: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        # per slot, the event of the last copy out of it, whichever pass made it: a slot is refilled
        # only after that copy is done, also at the start of the next pass (the next epoch)
        self._copied: list[Any] = []
        self._slot_shape: tuple[int, ...] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._src: tuple[np.ndarray, np.ndarray, bool] | None = None
        self._mapped: Any = None  # the dataset's memory map, when it has one (read-ahead hints)
        self._event: Any = None
        # A loader that decodes into shared-memory slots (``slots.py``) reuses each one after ``hold``
        # batches: what this Prefetcher may hold (the queue's ``depth``, the batch the producer thread
        # is handing over, the consumer's), and on a GPU the copies of the last COPY_LAG batches,
        # which the consumer waits for before it takes another batch.
        self._copies: collections.deque = collections.deque()
        if isinstance(loader, BatchLoader):
            loader.hold = max(loader.hold, self.depth + COPY_LAG + 1)
            loader.pin_slots = loader.pin_slots or self.cuda

    def __len__(self) -> int:
        return len(self.loader) - self.loader.start_batch

    # -- in-memory datasets: numpy gathers into a ring of (pinned) buffers -------------------
    def _source(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """The images as an (N, ...) numpy array, the labels, and whether the images are stored NHWC."""
        if self._src is None:
            images = self.loader.dataset.images  # type: ignore[attr-defined]
            labels = self.loader.dataset.labels.numpy()  # type: ignore[attr-defined]
            self._mapped = getattr(self.loader.dataset, "mapped", None)
            nhwc = images.permute(0, 2, 3, 1)
            if nhwc.is_contiguous():  # a packed dataset: an NCHW view of NHWC storage
                self._src = (nhwc.numpy(), labels, True)
            else:
                self._src = (images.contiguous().numpy(), labels, False)
        return self._src

    def _ring(self, shape: tuple[int, ...]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if self._slots is None or self._slot_shape != shape:
            if self._copied:  # the old buffers may still be read by copies in flight
                for ev in self._copied:
                    if ev is not None:
                        ev.synchronize()
            pin = self.pin
            self._slots = [
                (
                    torch.empty(shape, dtype=torch.uint8, pin_memory=pin),
                    torch.empty(shape[0], dtype=torch.long, pin_memory=pin),
                )
                for _ in range(self.depth)
            ]
            self._slot_shape = shape
            self._copied = [None] * self.depth
        return self._slots

    def _iter_memory(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        src, labels, nhwc = self._source()
        batches = self.loader.batch_indices()
        if not batches:
            return
        bs = self.loader.batch_size
        ring = self._ring((bs, *src.shape[1:]))
        done_events = self._copied  # CUDA: the last copy out of slot i (this pass or an earlier one)

        def gather(b: int) -> int:
            slot = b % self.depth
            ev = done_events[slot]
            if ev is not None:
                ev.synchronize()  # the previous copy out of this slot has finished (worker thread)
            idx = batches[b].numpy()
            img, lab = ring[slot]
            if self._mapped is not None and b + self.depth < len(batches):  # the batch after this ring's
                advise_rows(self._mapped, batches[b + self.depth].numpy())
            # mode="clip": straight into the slot (the default "raise" gathers into a temporary and
            # copies it: 6 ms against 2 ms for 128 images of 256x256x3); the indices are the loader's
            np.take(src, idx, axis=0, out=img.numpy()[: len(idx)], mode="clip")
            np.take(labels, idx, out=lab.numpy()[: len(idx)], mode="clip")
            return len(idx)

        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="alexnet-gather")
        pending: dict[int, Future] = {}
        try:
            for b in range(min(self.depth, len(batches))):
                pending[b] = self._pool.submit(gather, b)
            for b in range(len(batches)):
                n = pending.pop(b).result()
                slot = b % self.depth
                img, lab = ring[slot][0][:n], ring[slot][1][:n]
                x = img.permute(0, 3, 1, 2) if nhwc else img  # NCHW view; channels-last memory when NHWC
                if self.cuda:
                    x, y = self._to_device(x, lab)
                    done_events[slot] = self._event
                else:
                    # the consumer transforms (copies) the batch before it asks for the next one,
                    # and only then is this slot refilled
                    y = lab.clone()
                yield x, y
                if b + self.depth < len(batches):
                    pending[b + self.depth] = self._pool.submit(gather, b + self.depth)
        finally:
            for f in pending.values():
                f.cancel()
            for f in pending.values():
                if not f.cancelled():
                    try:
                        f.result()
                    except Exception:
                        pass

    def _to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Copy on the side stream, so that it runs while the device still computes earlier steps (the
        side stream does not wait for the main one); the main stream waits for the copy's event, and
        the same event tells the gather thread when the pinned slot may be refilled."""
        assert self.stream is not None
        main = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self.stream):
            yd = y.to(self.device, non_blocking=True)
            if isinstance(x, Encoded):  # --decode gpu: decoded here, on the side stream
                xd, yd = x.decode(self.device, yd)
            else:
                xd = x.to(self.device, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record(self.stream)
        main.wait_event(self._event)
        xd.record_stream(main)  # memory allocated on the side stream is used on the main one
        yd.record_stream(main)
        return xd, yd

    # -- folders decoded on the fly: DataLoader workers, one thread to keep a queue full -------
    def _iter_loader(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        q: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()
        end = object()

        def produce() -> None:
            try:
                for x, y in self.loader:
                    if self.cuda and not (_pinned(x) and _pinned(y)):  # a pinned slot is copied from as it is
                        x, y = x.pin_memory(), y.pin_memory()
                    while not stop.is_set():
                        try:
                            q.put((x, y), timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                q.put(end)
            except BaseException as e:  # re-raised in the consumer
                q.put(e)

        t = threading.Thread(target=produce, name="alexnet-loader", daemon=True)
        t.start()
        try:
            while True:
                item = q.get()
                if item is end:
                    return
                if isinstance(item, BaseException):
                    raise item
                x, y = item
                if self.cuda:
                    x, y = self._to_device(x, y)
                    self._copies.append(self._event)
                    if len(self._copies) > COPY_LAG:  # its slot may be refilled once this copy is done
                        self._copies.popleft().synchronize()
                elif isinstance(x, Encoded):  # decoded on the device (the CPU: tests, and the same pixels)
                    x, y = x.decode(self.device, y.to(self.device))
                else:  # the images are transformed (copied) before the next batch; the labels may be kept
                    x, y = x.to(self.device), y.to(self.device, copy=True)
                if not len(y):  # every member of the batch failed to decode
                    continue
                yield x, y
        finally:
            stop.set()
            while t.is_alive():
                try:
                    q.get_nowait()
                except queue.Empty:
                    t.join(timeout=0.1)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if isinstance(self.loader.dataset, InMemoryDataset):
            return self._iter_memory()
        return self._iter_loader()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
