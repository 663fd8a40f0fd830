"""The README's table of the paper's claims, one row per claim and protocol version, from published
experiment folders.

    python benchmarks/paper_table.py docs/paper             # every claim, both versions (docs/paper.md)
    python benchmarks/paper_table.py docs/paper --summary   # one row per experiment (the README)

Rows follow `alexnet experiment list`'s order. For each experiment: the second version's claims
(``docs/paper/NAME``; its primary claim's verdict in bold), then the first version's, superseded
(``docs/paper/v1/NAME``). An experiment the second version has not published yet says why: pending
(its runs are under way), not rerun or not run (the protocol says which). Every cell comes from the
folders' result.json, so the README's table is this command's output, never typed by hand. The
interval is the two-sided 95% t interval of the effect (for first-version results, which did not
record it, computed from their t, n and mean). Time is the second version's CPU time
(``provenance.cpu_hours``: every run's own process, a pilot's or a search's runs included) and the
commit that trained the runs; the first version recorded neither, so its cell is the runs' own
wall-clock minutes (``train_seconds``).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from alexnet.experiments import EXPERIMENTS
from alexnet.experiments.report import load_results
from alexnet.experiments.verdicts import fmt_any_interval, fmt_any_test

NOT_IN_V2 = {
    "relu-vs-tanh": "not rerun: the first version's result stands (protocol v2)",
    "weight-decay": "not run: beyond the CPU budget (protocol v2)",
}


def _interval(test: dict[str, Any]) -> str:
    """The test's interval; a first-version test's from its t, n and mean (it recorded none)."""
    if test.get("ci") or test.get("kind") == "sign" or not test:
        return fmt_any_interval(test)
    if ": below " in test.get("what", "") or ": above " in test.get("what", ""):
        return "—"  # a first-version level test: its mean is the distance to the bound, not the error
    t, n, mean = test.get("t"), test.get("n", 0), test.get("mean")
    if t is None or n < 2 or mean is None or t == 0 or math.isinf(t):
        return "—"
    from scipy import stats

    se = abs(mean / t)
    half = float(stats.t.ppf(0.975, n - 1)) * se
    centre = mean + test.get("null", 0.0)
    log = test.get("unit") == " (log ratio)"
    return fmt_any_interval({**test, "ci": [centre - half, centre + half], "log": log})


def _time(r: dict[str, Any]) -> str:
    """CPU hours and the runs' commit (a second-version result); else the runs' wall-clock minutes."""
    prov = r.get("provenance") or {}
    if prov.get("cpu_hours") is not None:
        commits = prov.get("run_commits") or [prov.get("commit") or ""]
        return f"{prov['cpu_hours']:.2f} CPU h on {', '.join(c[:7] for c in commits)}"
    return f"{r['train_seconds'] / 60:.1f} min (wall)"


def _rows(name: str, r: dict[str, Any], version: int) -> list[str]:
    out = []
    for i, c in enumerate(r["verdict"]["claims"]):
        test = c.get("test") or {}
        ratio = test.get("ratio_to_paper")
        status = f"**{c['status']}**" if i == 0 and version == 2 else c["status"]
        out.append(
            f"| {name if i == 0 else ''} ({r['section']}) | {'v2' if version == 2 else 'v1, superseded'} | "
            f"{c['claim']} | {c.get('paper') or '—'} | {c.get('figure') or '—'} | {status} | "
            f"{fmt_any_test(test)} | {_interval(test)} | {f'{ratio:.2f}x' if ratio is not None else '—'} | "
            f"{_time(r)} |"
        )
    return out


def _load(root: Path) -> dict[str, dict[str, Any]]:
    if not root.is_dir():
        return {}
    folders = [d for d in sorted(root.iterdir()) if (d / "result.json").is_file()]
    return {r["experiment"]: r for _, r in load_results(folders)} if folders else {}


def table(root: Path) -> str:
    current, first = _load(root), _load(root / "v1")
    names = [n for n in EXPERIMENTS if n in current or n in first]
    names += sorted((set(current) | set(first)) - set(names))
    lines = [
        "| experiment (paper) | protocol | claim | paper | ours: the verdict's figure | verdict | test | "
        "95% interval | ratio to the paper's | time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in names:
        if name in current:
            lines += _rows(name, current[name], 2)
        else:
            section = first[name]["section"] if name in first else EXPERIMENTS[name].section
            why = NOT_IN_V2.get(name, "pending: its runs are under way (protocol v2)")
            lines.append(f"| {name} ({section}) | v2 | — | — | {why} | — | — | — | — | — |")
        if name in first:
            lines += _rows(name if name not in current else "", first[name], 1)
    return "\n".join(lines)


def summary(root: Path) -> str:
    """One row per experiment: its primary claim under the current protocol (or why it has none yet)
    and the first version's verdict beside it, superseded."""
    current, first = _load(root), _load(root / "v1")
    names = [n for n in EXPERIMENTS if n in current or n in first]
    lines = [
        "| claim (paper) | paper | ours (protocol v2) | verdict (v2) | 95% interval | time | v1 verdict (superseded) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in names:
        r = current.get(name) or first[name]
        c = r["verdict"]["claims"][0] if name in current else {}
        v1 = first[name]["verdict"]["status"] if name in first else "—"
        if c:
            test = c.get("test") or {}
            cells = [c.get("paper") or "—", c.get("figure") or "—", f"**{c['status']}**", _interval(test), _time(r)]
        elif name == "relu-vs-tanh" and name in first:  # its section unchanged: the first version's result stands
            c1 = first[name]["verdict"]["claims"][0]
            cells = [
                c1.get("paper") or "—",
                f"{c1['figure']} (not rerun: v1's runs)",
                c1["status"],
                _interval(c1.get("test") or {}),
                _time(first[name]),
            ]
        else:
            paper = (first[name]["verdict"]["claims"][0].get("paper") or "—") if name in first else "—"
            cells = [paper, NOT_IN_V2.get(name, "pending: its runs are under way"), "—", "—", "—"]
        lines.append(f"| [{name}](docs/paper.md) ({r['section']}) | " + " | ".join(cells) + f" | {v1} |")
    return "\n".join(lines)


def replace_table(page: Path, table_text: str) -> None:
    """``page`` with its table whose header starts with ``table_text``'s first column replaced by
    ``table_text`` (so a column added or renamed is written over the old table)."""
    text = page.read_text()
    first = table_text.split(" | ", 1)[0] + " | "
    start = text.find("\n" + first) + 1
    if start == 0:
        raise SystemExit(f"paper_table: {page} has no table whose header starts with {first.strip()!r}")
    end = text.find("\n\n", start)
    page.write_text(text[:start] + table_text + (text[end:] if end >= 0 else "\n"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path, help="a folder of experiment folders (docs/paper; the first version's in v1/)")
    p.add_argument("--summary", action="store_true", help="one row per experiment (the README's table)")
    p.add_argument("--write", action="store_true", help="write both tables into docs/paper.md and README.md")
    args = p.parse_args(argv)
    if not args.root.is_dir():
        print(f"paper_table: {args.root}: not a folder", file=sys.stderr)
        return 2
    if args.write:
        repo = Path(__file__).resolve().parents[1]
        replace_table(repo / "docs" / "paper.md", table(args.root))
        replace_table(repo / "README.md", summary(args.root))
        return 0
    print(summary(args.root) if args.summary else table(args.root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
