"""``alexnet experiment``: reproduce one of the paper's claims (`alexnet experiment list`)."""

from __future__ import annotations

import argparse
import json
import shlex
from typing import Any

from ..errors import UserError


def add_parser(sub: Any) -> None:
    x = sub.add_parser(
        "experiment",
        help="reproduce one of the paper's claims (`alexnet experiment list`)",
        description="Run one of the paper's claims as an experiment: trains its arms over seeds, then "
        "writes result.json, report.md and plots into --out. Finished runs are reused when rerun.",
    )
    x.add_argument("name", metavar="NAME", help="an experiment name, or 'list'")
    x.add_argument(
        "--data",
        metavar="SPEC",
        help="cifar10[:ROOT], mnist[:ROOT] or an image folder (default: the kind the experiment uses)",
    )
    x.add_argument("--out", metavar="DIR", help="the experiment folder (default: runs/experiments/NAME)")
    x.add_argument("--seeds", type=int, metavar="K", help="seeds per arm (default: the experiment's)")
    x.add_argument("--epochs", type=int, metavar="N", help="epochs per run (default: the experiment's)")
    x.add_argument("--train-images", type=int, metavar="N", help="train on a random subset of N images per seed")
    x.add_argument("--val-images", type=int, metavar="N", help="test on a random subset of N images")
    x.add_argument("--device", default="auto")
    x.add_argument(
        "--no-pilot",
        action="store_true",
        help="skip the pilot that checks the learning rate (quick trials; not a protocol run)",
    )
    x.add_argument("--json", action="store_true", help="print result.json")
    x.add_argument("--quiet", action="store_true", help="no progress bars")
    x.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..experiments import EXPERIMENTS, run_experiment

    if args.name == "list":
        print(f"{'experiment':<14}{'data':<9}{'seeds':>6}{'epochs':>7}{'images':>8}{'minutes':>9}  claim")
        for spec in EXPERIMENTS.values():
            minutes = f"{spec.minutes:.0f}" if spec.minutes else "?"
            print(
                f"{spec.name:<14}{spec.data:<9}{spec.seeds:>6}{spec.epochs:>7}{spec.train_images or 'all':>8}"
                f"{minutes:>9}  {spec.title}"
            )
        print('\nminutes: the default settings on a 2-core CPU (see the README\'s "Reproducing the paper")')
        return 0
    if args.name not in EXPERIMENTS:
        raise UserError(
            f"experiment {args.name!r}: not one of {', '.join(EXPERIMENTS)} (see `alexnet experiment list`)"
        )
    spec = EXPERIMENTS[args.name]
    data = args.data or spec.data
    out = args.out or f"runs/experiments/{spec.name}"
    command = "alexnet " + shlex.join(args.argv) if getattr(args, "argv", None) else None
    r = run_experiment(
        spec.name,
        data,
        out,
        seeds=args.seeds,
        epochs=args.epochs,
        train_images=args.train_images,
        val_images=args.val_images,
        device=args.device,
        progress=not args.quiet,
        command=command,
        pilot=not args.no_pilot,
    )
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"\n{r['title']}")
    width = max(len(row["quantity"]) for row in r["table"])
    for row in r["table"]:
        print(f"  {row['quantity']:<{width}}  paper: {row['paper']:<14}  ours: {row['ours']}")
    print(f"verdict: {r['verdict']['status']}: {r['verdict']['reason']}")
    print(
        f"{r['seconds'] / 60:.1f} min; {out}/report.md, {out}/result.json, "
        + ", ".join(f"{out}/{p}" for p in r["plots"])
    )
    return 0
