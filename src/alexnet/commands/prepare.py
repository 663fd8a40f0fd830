"""``alexnet prepare``: pack an image folder into the fast memory-mapped format."""

from __future__ import annotations

import argparse
import os
from typing import Any


def add_parser(sub: Any) -> None:
    pp = sub.add_parser(
        "prepare",
        help="pack an image folder into the fast memory-mapped format",
        description="Resize every image (shorter side SIZE, central square), store them in one "
        "memory-mapped file per split with the class list and the training-set statistics. "
        "Interrupt and rerun to finish.",
    )
    pp.add_argument("src", metavar="SRC", help="an image folder with train/ and val/ (or test/), or an archive of one")
    pp.add_argument("dst", metavar="DST", help="the packed dataset folder to write")
    pp.add_argument("--size", type=int, default=256, help="side of the stored images (default: 256, the paper's)")
    pp.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2)), help="decoding processes")
    pp.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.packed.writer import prepare

    summary = prepare(args.src, args.dst, size=args.size, workers=args.workers)
    print("\n".join(summary.lines()))
    print(f"next: alexnet train --data {summary.dst} --model alexnet --out RUN")
    return 0
