"""``alexnet report``: gather experiment folders into one Markdown and HTML page."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    rp = sub.add_parser("report", help="gather experiment folders into one Markdown and HTML page")
    rp.add_argument("dirs", nargs="+", metavar="DIR", help="experiment folders (each with result.json)")
    rp.add_argument("--out", default="report.md", metavar="FILE.md", help="the Markdown page; the HTML goes beside it")
    rp.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..experiments.report import write_report

    md, page = write_report(args.dirs, args.out)
    print(f"wrote {md} and {page}")
    return 0
