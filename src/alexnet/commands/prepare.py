"""``alexnet prepare``: pack an image folder into the memory-mapped raw format or into JPEG shards;
``alexnet prepare --verify DST`` checks a shard set."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..errors import UserError, printable
from ._common import at_least


def add_parser(sub: Any) -> None:
    pp = sub.add_parser(
        "prepare",
        help="pack an image folder into the fast memory-mapped format or into JPEG shards",
        description="Resize every image (shorter side SIZE, central square; or, with --format jpeg --shape "
        "shorter, the whole image with its aspect) and store the split with the class list and the "
        "training-set statistics: --format raw (the default) as one memory-mapped uint8 file per split, "
        "--format jpeg as tar shards in WebDataset's layout with an index. Interrupt and rerun to finish. "
        "--verify DST checks a shard set against its manifest.",
    )
    pp.add_argument(
        "src", metavar="SRC", nargs="?", help="an image folder with train/ and val/ (or test/), or an archive of one"
    )
    pp.add_argument("dst", metavar="DST", nargs="?", help="the packed dataset folder to write")
    pp.add_argument("--size", type=int, default=256, help="side of the stored images (default: 256, the paper's)")
    pp.add_argument(
        "--format",
        choices=("raw", "jpeg"),
        default="raw",
        help="raw: decoded pixels, memory-mapped (fastest to read; 196,608 bytes an image at 256); jpeg: "
        "JPEG shards (5-9x smaller; decoded by the loader's workers) (default: raw)",
    )
    pp.add_argument("--quality", type=int, default=95, help="--format jpeg: the JPEG quality, 1-100 (default: 95)")
    pp.add_argument(
        "--shape",
        choices=("square", "shorter"),
        default="square",
        help="--format jpeg: square (the paper's central SIZE x SIZE) or shorter (shorter side SIZE, aspect "
        "kept up to 2:1: what RandomResizedCrop needs) (default: square)",
    )
    pp.add_argument(
        "--shard-size", type=at_least(1), default=2500, help="--format jpeg: images per shard (default: 2500)"
    )
    pp.add_argument("--verify", metavar="DST", help="check every shard of DST against its manifest; prepare nothing")
    pp.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2)), help="decoding processes")
    pp.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.verify:
        if args.src or args.dst:
            raise UserError("prepare --verify DST takes no SRC or DST besides it")
        from ..data.shards.writer import verify

        problems = verify(args.verify)
        for line in problems:
            print(printable(line))
        if problems:
            print(f"alexnet: error: {args.verify}: {len(problems):,} problem(s)", file=sys.stderr)
            return 1
        print(f"{printable(args.verify)}: every shard matches its manifest")
        return 0
    if not args.src or not args.dst:
        raise UserError("prepare needs SRC and DST (or --verify DST)")
    jpeg_only = [f"--{k.replace('_', '-')}" for k in ("quality", "shape", "shard_size") if _given(args, k)]
    if args.format == "raw" and jpeg_only:
        raise UserError(f"{', '.join(jpeg_only)}: only with --format jpeg")
    if args.format == "jpeg":
        from ..data.shards.writer import prepare_shards

        summary = prepare_shards(
            args.src,
            args.dst,
            size=args.size,
            shape=args.shape,
            quality=args.quality,
            shard_size=args.shard_size,
            workers=args.workers,
        )
    else:
        from ..data.packed.writer import prepare

        summary = prepare(args.src, args.dst, size=args.size, workers=args.workers)
    print("\n".join(summary.lines()))
    print(f"next: alexnet train --data {printable(summary.dst)} --model alexnet --out RUN")
    return 0


def _given(args: argparse.Namespace, key: str) -> bool:
    defaults = {"quality": 95, "shape": "square", "shard_size": 2500}
    return getattr(args, key) != defaults[key]
