"""Batch slots in shared memory (``data/slots.py``): JPEG shards decoded by the loader's workers straight
into a reused ring give the batches the fresh-tensor path gives, keep each batch intact for as long as
the consumer may read it, and drop an unusable member with its shard and key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet.data.loader import BatchLoader, ResizedCrops
from alexnet.data.pipeline import COPY_LAG, Prefetcher
from alexnet.data.shards import codec
from alexnet.data.shards.reader import load_shards
from alexnet.data.slots import SlotRing

from .test_shards import _patch_member, prep, source


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("slots")
    src = source(tmp / "src", bad=False, size=(56, 40))
    for shape in ("square", "shorter"):
        prep(src, tmp / shape, shape=shape)
    return {shape: tmp / shape for shape in ("square", "shorter")}


def _loaders(root: Path, rrc: bool, workers: int, batch: int = 6) -> tuple[BatchLoader, BatchLoader]:
    ds = load_shards(root)
    fresh, slots = (BatchLoader(ds, batch, shuffle=True, seed=5, workers=workers) for _ in range(2))
    for lo in (fresh, slots):
        lo.crops = ResizedCrops((0.2, 1.0), (3 / 4, 4 / 3), 24) if rrc else None
    return fresh, slots


@pytest.mark.parametrize("shape,rrc", [("square", False), ("shorter", False), ("shorter", True)])
def test_the_slots_give_the_fresh_paths_batches(shards: dict[str, Path], shape: str, rrc: bool) -> None:
    """Two passes (the ring's slots continue across them), two workers: the same pixels, labels and
    channels-last layout as the fresh tensors of ``BatchLoader`` alone."""
    fresh, slots = _loaders(shards[shape], rrc, workers=2)
    pre = Prefetcher(slots, torch.device("cpu"), depth=2)
    assert slots.hold == 2 + COPY_LAG + 1
    for epoch in range(2):
        fresh.set_epoch(epoch)
        slots.set_epoch(epoch)
        pairs = list(zip(fresh, pre, strict=True))
        assert len(pairs) == len(fresh)
        for (x1, y1), (x2, y2) in pairs:
            assert x2.is_contiguous(memory_format=torch.channels_last)
            assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert slots._ring is not None and slots._ring.count == 2 * 4 + slots.hold + 1


def test_a_batch_stays_intact_for_hold_more_batches(shards: dict[str, Path]) -> None:
    """The ring is a fraction of an epoch, so slots are reused many times a pass: a consumer that keeps
    the last ``hold`` batches as views finds them unchanged (as copied when yielded) while the workers
    decode ahead into the other slots."""
    ds = load_shards(shards["square"])
    loader = BatchLoader(ds, 2, shuffle=True, seed=1, workers=2)  # 42 images: 21 batches, 2 * 4 + 3 + 1 slots
    loader.hold = 3
    loader.set_epoch(0)
    kept: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for x, y in loader:
        kept.append((x, x.clone(), y.clone()))
        for view, copy, _ in kept[-loader.hold - 1 :]:
            assert torch.equal(view, copy)
    assert loader._ring is not None and len(kept) > 1.5 * loader._ring.count
    fresh = BatchLoader(ds, 2, shuffle=True, seed=1, workers=0)
    fresh.set_epoch(0)
    assert all(torch.equal(x, c) and torch.equal(y, yc) for (x, y), (_, c, yc) in zip(fresh, kept, strict=True))


def test_an_unusable_member_is_dropped_and_the_batch_closes_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dst = tmp_path / "jp"
    prep(source(tmp_path / "src", bad=False), dst)
    ds = load_shards(dst)
    loader = BatchLoader(ds, 8, shuffle=False, workers=1)
    loader.hold = 2
    bad = 3
    _patch_member(dst, bad, b"\x00" * 64, ds)
    batches = list((x.clone(), y.clone()) for x, y in loader)
    assert [len(y) for _, y in batches[:2]] == [7, 8]
    keep = [i for i in range(16) if i != bad]
    want = torch.stack([ds[i][0] for i in keep[:7]])
    assert torch.equal(batches[0][0], want)
    assert batches[0][1].tolist() == [int(ds.index[i, 4]) for i in keep[:7]]
    assert len(loader.skipped) == 1 and loader.skipped[0][0] == ds.where(bad)
    assert loader.skipped[0][1].startswith("not a readable JPEG")
    assert ds.where(bad) in capsys.readouterr().err


def test_pillow_decodes_into_a_slot_as_simplejpeg_does(
    shards: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("simplejpeg")
    ds = load_shards(shards["square"])
    side = ds.image_size
    out = torch.empty(2, side, side, 3, dtype=torch.uint8)
    want = ds[4][0].permute(1, 2, 0).numpy()
    ds.decode_into(4, out[0])
    monkeypatch.setattr(codec, "simplejpeg", None)
    ds.decode_into(4, out[1])
    assert torch.equal(out[0], out[1])
    assert np.array_equal(out[0].numpy(), want)


def test_the_ring_is_shared_memory_and_pinning_needs_cuda() -> None:
    ring = SlotRing(3, 4, (8, 8, 3))
    assert ring.images.is_shared() and ring.labels.is_shared()
    assert ring.fits(2, 4, (8, 8, 3)) and not ring.fits(4, 4, (8, 8, 3)) and not ring.fits(3, 5, (8, 8, 3))
    if not torch.cuda.is_available():
        assert ring.pin() is False
    ring.close()


def test_a_ring_that_forked_workers_cannot_see_is_detected() -> None:
    """``pin`` checks with one fork that a worker could write the page-locked slots; a driver that marks
    them MADV_DONTFORK (simulated here with madvise itself) fails the check, instead of every worker."""
    import ctypes
    import mmap

    ring = SlotRing(2, 2, (64, 64, 3))
    assert ring.children_can_write()
    libc = ctypes.CDLL(None, use_errno=True)
    ptr, size = ring.images.data_ptr(), ring.images.untyped_storage().nbytes()
    assert ptr % mmap.PAGESIZE == 0
    MADV_DONTFORK = 10
    assert libc.madvise(ctypes.c_void_p(ptr), ctypes.c_size_t(size), MADV_DONTFORK) == 0
    assert not ring.children_can_write()
