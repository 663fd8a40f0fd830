"""The README's table of the paper's claims, one row per claim, from published experiment folders.

    python benchmarks/paper_table.py docs/paper        # prints the Markdown table

Rows follow `alexnet experiment list`'s order; an experiment's first row is its primary claim (its
verdict in bold). Every cell comes from the folders' result.json, so the README's table is this
command's output, never typed by hand. Minutes are ``train_seconds``: every run's own time (training
and its evaluations, a learning-rate search's runs included), so an experiment resumed after an
interruption, which reuses its finished runs, counts them as the report pages do.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alexnet.experiments import EXPERIMENTS
from alexnet.experiments.base import fmt_any_test
from alexnet.experiments.report import load_results


def table(root: Path) -> str:
    folders = [d for d in sorted(root.iterdir()) if (d / "result.json").is_file()]
    results = {r["experiment"]: r for _, r in load_results(folders)}
    order = [n for n in EXPERIMENTS if n in results] + sorted(set(results) - set(EXPERIMENTS))
    lines = ["| experiment (paper) | claim | paper | ours: the verdict's figure | verdict | test | "
             "ratio to the paper's | minutes |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in order:
        r = results[name]
        for i, c in enumerate(r["verdict"]["claims"]):
            test = c.get("test") or {}
            ratio = test.get("ratio_to_paper")
            status = f"**{c['status']}**" if i == 0 else c["status"]
            lines.append(f"| {name if i == 0 else ''} ({r['section']}) | {c['claim']} | {c.get('paper') or '—'} | "
                         f"{c.get('figure') or '—'} | {status} | {fmt_any_test(test)} | "
                         f"{f'{ratio:.2f}x' if ratio is not None else '—'} | {r['train_seconds'] / 60:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path, help="a folder of experiment folders (docs/paper)")
    args = p.parse_args(argv)
    if not args.root.is_dir():
        print(f"paper_table: {args.root}: not a folder", file=sys.stderr)
        return 2
    print(table(args.root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
