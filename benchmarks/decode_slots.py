"""Where a JPEG worker's time goes per batch, with and without the shared-memory batch slots.

    python benchmarks/decode_slots.py SHARDS [--batch 128]

SHARDS: a ``square`` JPEG shard set (``alexnet prepare SRC DST --format jpeg``). On one core (one
thread), medians of 7: the batch decoded into fresh arrays and stacked into a fresh block of shared
memory (the DataLoader's way: every block is new memory, faulted in and zeroed), against the same
images decoded straight into slots of shared memory mapped once (``data/slots.py``). Prints a table
and appends it to benchmarks/results/decode_slots.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _results import append_results

from alexnet.data.shards import codec
from alexnet.data.shards.reader import load_shards

HERE = Path(__file__).resolve().parent


def median_ms(f: Callable[[], object], repeats: int = 7) -> float:
    f()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return sorted(times)[repeats // 2] * 1e3


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("shards")
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args()
    torch.set_num_threads(1)
    ds = load_shards(args.shards)
    if ds.shape != "square":
        print(f"{args.shards}: a square shard set is needed (this one is {ds.shape})", file=sys.stderr)
        return 2
    n, side = min(args.batch, len(ds)), ds.image_size
    idx = list(range(n))
    data = [ds.read(i) for i in idx]
    hw = (side, side)

    def fresh_decode() -> list[torch.Tensor]:
        return [torch.from_numpy(codec.decode(b, hw)) for b in data]

    decoded = fresh_decode()

    def fresh_block() -> torch.Tensor:
        out = decoded[0].new(decoded[0].untyped_storage()._new_shared(n * decoded[0].numel()))
        return torch.stack(decoded, out=out.view(n, *decoded[0].shape))

    ring = torch.empty(n, side, side, 3, dtype=torch.uint8).share_memory_()

    def into_slot() -> None:
        for k, b in enumerate(data):
            codec.decode_into(b, hw, ring[k].numpy())

    def copy_into_slot() -> None:
        for k, x in enumerate(decoded):
            ring[k].copy_(x)

    rows = [
        ("decode into fresh arrays (kept for the stack)", median_ms(fresh_decode)),
        ("stack into a fresh shared-memory block", median_ms(fresh_block)),
        ("copy the decoded batch into mapped slots", median_ms(copy_into_slot)),
        ("decode straight into mapped slots", median_ms(into_slot)),
    ]
    before, after = rows[0][1] + rows[1][1], rows[3][1]
    text = (
        f"## {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n\n"
        f"{args.shards}: {n} images of {side}x{side}, decoded by {codec.decoder_name()}, one thread, "
        "medians of 7.\n\n| per batch | ms |\n| --- | --- |\n"
        + "".join(f"| {what} | {ms:.1f} |\n" for what, ms in rows)
        + f"\nA worker's batch: {before:.1f} ms the DataLoader's way, {after:.1f} ms into the slots "
        f"({before / after:.2f}x).\n\n"
    )
    append_results(HERE / "results" / "decode_slots.md", [text.rstrip("\n")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
