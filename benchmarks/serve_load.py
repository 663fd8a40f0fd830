"""``alexnet serve`` under load: the README's serving table.

    python benchmarks/serve_load.py [--run RUN] [--seconds 20] [--clients 16]

Starts ``alexnet serve RUN`` on a free loopback port (``--max-bytes 1MB``), and posts the bundled
CIFAR-10 sample's test JPEGs, one per multipart request, from ``--clients`` threads: with dynamic
batching (``--max-batch 32``), without it (``--max-batch 1``), and with 10% hostile uploads mixed
in (not an image, truncated, a decompression bomb, too many files, over --max-bytes, malformed
multipart). Appends the table to benchmarks/results/serve-load.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from _results import append_results

from alexnet.demo import sample_jpegs
from alexnet.runtime import cpu_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's tests/support
from tests.support.data import save_untrained_run  # noqa: E402
from tests.support.serving import ServerProcess, load_test  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="a trained run (default: cifar_18pct as initialised; the same compute)")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--out", default=str(HERE / "results" / "serve-load.md"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="alexnet-serve-bench-") as tmp:
        images = [data for _, data in sample_jpegs()]
        run = args.run or str(save_untrained_run(Path(tmp) / "run", "cifar_18pct"))
        rows = []
        for label, max_batch, hostile in (
            ("dynamic batching (--max-batch 32)", 32, 0.0),
            ("no batching (--max-batch 1)", 1, 0.0),
            ("--max-batch 32, 10% hostile uploads", 32, 0.1),
        ):
            with ServerProcess(run, "--max-bytes", "1MB", "--max-batch", str(max_batch)) as s:
                load_test(s.url, images, clients=args.clients, seconds=2)  # warm-up
                r = load_test(
                    s.url, images, clients=args.clients, seconds=args.seconds, hostile_fraction=hostile, max_bytes=2**20
                )
            rows.append((label, r))
            print(
                f"{label}: {r['requests_per_sec']:.0f} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
                f"errors {r['errors']}, hostile answered wrongly {r['hostile_failures']}",
                *r["failures"],
                file=sys.stderr,
                sep="\n  ",
            )
    cmd = " ".join(["python benchmarks/serve_load.py", *(["--run", args.run] if args.run else [])])
    lines = [
        f"## {time.strftime('%Y-%m-%d %H:%M')}, `{cmd}`",
        "",
        f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}; server and {args.clients} clients "
        f"on the same machine (loopback), {args.seconds:.0f} s per row, {len(images)} CIFAR-10 JPEGs, "
        "one image per request.",
        "",
        "| setting | requests/s | good requests/s | p50 ms | p99 ms | errors (good requests) | hostile requests | "
        "hostile answered wrongly |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, r in rows:
        lines.append(
            f"| {label} | {r['requests_per_sec']:.0f} | {r['good_per_sec']:.0f} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['errors']} | {r['hostile_requests']} | {r['hostile_failures']} |"
        )
    append_results(args.out, lines)
    return 0 if all(r["errors"] == 0 and r["hostile_failures"] == 0 for _, r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
