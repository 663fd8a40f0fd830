"""``alexnet visualize``: the paper's figures from a checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    v = sub.add_parser("visualize", help="the paper's figures from a checkpoint").add_subparsers(
        dest="what", required=True, metavar="WHAT"
    )
    vk = v.add_parser("kernels", help="the first conv layer's kernels as a grid (Figure 3)")
    vk.add_argument("run", metavar="RUN_OR_CKPT")
    vk.add_argument(
        "--out", metavar="PNG", help="default: RUN/kernels.png (replaced); an existing --out only with --force"
    )
    vk.add_argument("--force", action="store_true", help="replace an existing --out")
    vk.add_argument("--device", default="cpu")
    vk.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..files import figure_format, new_output
    from ..inference.classifier import load
    from ..visualize import plot_kernels

    if args.out:  # before the model is loaded
        figure_format(new_output(args.out, "--out", args.force))
    clf = load(args.run, args.device)
    columns = int(clf.checkpoint.get("model_options", {}).get("columns", 2 if clf.name == "alexnet" else 1))
    run = Path(args.run)
    out = Path(args.out) if args.out else (run if run.is_dir() else run.parent) / "kernels.png"
    plot_kernels(clf.model, out, columns=columns)
    print(f"wrote {out}")
    return 0
