"""``alexnet models``: list the networks, or show one's layer table."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import fmt_count, parse_options


def add_parser(sub: Any) -> None:
    m = sub.add_parser("models", help="list the networks, or show one's layer table")
    m.add_argument("name", nargs="?", help="a model name: print its layers, output shapes and parameters")
    m.add_argument("--model-opt", action="append", metavar="KEY=VALUE", help="a builder option, e.g. lrn=false")
    m.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models import list_models, model_info
    from ..models.summary import model_summary

    if args.name:
        opts = parse_options(args.model_opt or [])
        s = model_summary(args.name, **opts)
        info = model_info(args.name)
        c, h, w = s.input_shape
        print(f"{args.name}: {info.description}")
        print(f"input {c}x{h}x{w}, {s.params:,} parameters, {fmt_count(s.macs)} multiply-adds per image")
        # the options this table was built with: the defaults, with those given on the command line
        given = {k: v for k, v in opts.items() if k in info.options()}
        print(
            "options: "
            + ", ".join(f"{k}={v!r}" + (" (given)" if k in given else "") for k, v in (info.options() | given).items())
        )
        print()
        print(f"{'layer':<22}{'type':<22}{'output shape':<18}{'params':>12}{'mult-adds':>12}")
        for r in s.layers:
            shape = "x".join(map(str, r.output_shape))
            print(f"{r.name:<22}{r.kind:<22}{shape:<18}{r.params:>12,}{fmt_count(r.macs) if r.macs else '':>12}")
        return 0
    print(f"{'model':<14}{'parameters':>14}{'input':>12}{'mult-adds':>12}  description")
    for name in list_models():
        s = model_summary(name)
        c, h, w = s.input_shape
        print(f"{name:<14}{s.params:>14,}{f'{c}x{h}x{w}':>12}{fmt_count(s.macs):>12}  {s.description}")
    return 0
