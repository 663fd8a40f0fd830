"""``alexnet bench loader``: training batches per second from a packed dataset against
torchvision's standard ImageFolder pipeline, on the same images, batch size and worker count.

Both sides produce batches of randomly cropped and flipped 224x224 images with their labels.
- torchvision: ``ImageFolder`` + PIL decode + ``RandomResizedCrop(224)`` + ``RandomHorizontalFlip``
  + ``ToTensor`` + ``Normalize`` in ``DataLoader`` worker processes: float32 batches.
- packed: ``alexnet prepare``'s memory map, batches gathered in the main process and cropped and
  flipped as whole uint8 batches (``random_crop``), with ``workers`` threads. Our training loop
  normalises after the transfer to the device (a GPU does that in microseconds, and the transfer
  moves 4x fewer bytes), so the headline figure stops at the uint8 batch;
  ``packed_normalised_images_per_sec`` adds the normalisation on the CPU as well.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import torch

from .data.datasets import resolve_folder
from .data.loader import BatchLoader
from .data.packed import is_packed, load_packed
from .data.transforms import EvalTransform, normalize, random_crop
from .errors import UserError
from .train import IMAGENET_MEAN as MEAN
from .train import IMAGENET_STD as STD


def _rate(batches: Iterable[Any], n_batches: int, warmup: int = 2) -> float:
    """Images per second over ``n_batches`` batches after ``warmup`` (workers started, caches warm)."""
    it = iter(batches)
    for _ in range(warmup):
        next(it)
    t0, seen = time.perf_counter(), 0
    for _ in range(n_batches):
        x, y = next(it)[:2]
        seen += len(y)
    return seen / (time.perf_counter() - t0)


def torchvision_rate(folder: Path, batch_size: int, workers: int, n_batches: int) -> float:
    from torch.utils.data import DataLoader, RandomSampler
    from torchvision import datasets, transforms

    tf = transforms.Compose([
        transforms.RandomResizedCrop(224),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize([m / 255 for m in MEAN], [s / 255 for s in STD]),
    ])
    ds = datasets.ImageFolder(str(folder / "train"), tf)
    sampler = RandomSampler(ds, replacement=True, num_samples=10**9)
    dl = DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers, persistent_workers=workers > 0)
    return _rate(dl, n_batches)


def packed_rate(packed: Path, batch_size: int, workers: int, n_batches: int, normalise: bool = False) -> float:
    ds = load_packed(packed, "train")
    t = EvalTransform(ds.images.shape[-1], 224, 0, 3, MEAN, STD)
    loader = BatchLoader(ds, batch_size, shuffle=True)
    gen = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, workers))

    def batches() -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        epoch = 0
        while True:
            loader.set_epoch(epoch)
            for x, y in loader:
                x = random_crop(x, 224, generator=gen, flip=True)
                yield (normalize(x, t.mean, t.std, channels_last=True) if normalise else x), y
            epoch += 1

    try:
        return _rate(batches(), n_batches)
    finally:
        torch.set_num_threads(threads)


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def bench_loader(data: str, *, packed: str | None = None, batch_size: int = 128, workers: int = 2,
                 batches: int = 20, repeats: int = 3) -> dict[str, Any]:
    """Measure both pipelines ``repeats`` times, alternating, and report the medians."""
    from .prepare import prepare

    src = Path(data)
    if is_packed(src):
        raise UserError(f"--data {data}: give the image folder (the JPEGs); the packed copy goes in --packed")
    folder = resolve_folder(src)
    tmp = None
    if packed is None:
        tmp = tempfile.TemporaryDirectory(prefix="alexnet-bench-")
        packed = tmp.name
    pk = Path(packed)
    prepare(folder, pk, size=256, workers=max(1, os.cpu_count() or 1), progress=False)
    try:
        tv, ours, ours_norm = [], [], []
        for _ in range(repeats):
            tv.append(torchvision_rate(folder, batch_size, workers, batches))
            ours.append(packed_rate(pk, batch_size, workers, batches))
            ours_norm.append(packed_rate(pk, batch_size, workers, batches, normalise=True))
        result = {
            "images_per_sec": statistics.median(ours),
            "torchvision_images_per_sec": statistics.median(tv),
            "speedup": statistics.median(ours) / statistics.median(tv),
            "packed_normalised_images_per_sec": statistics.median(ours_norm),
            "speedup_normalised": statistics.median(ours_norm) / statistics.median(tv),
            "runs_packed": ours,
            "runs_packed_normalised": ours_norm,
            "runs_torchvision": tv,
            "batch_size": batch_size,
            "workers": workers,
            "batches_per_run": batches,
            "train_images": len(load_packed(pk, "train")),
            "jpeg_bytes": folder_bytes(folder / "train"),
            "packed_bytes": (pk / "train_images.u8").stat().st_size,
        }
    finally:
        if tmp is not None:
            tmp.cleanup()
    return result
