"""``alexnet demo``: train on the bundled CIFAR-10 sample, evaluate, and classify a few images."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    d = sub.add_parser("demo", help="train on the bundled CIFAR-10 sample, evaluate, and classify a few images")
    d.add_argument("--out", default="runs/demo", help="the run folder (default: runs/demo)")
    d.add_argument("--epochs", type=int, default=None)
    d.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import main

    return main(args)
