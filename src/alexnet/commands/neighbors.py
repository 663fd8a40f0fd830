"""``alexnet neighbors``: training images nearest to query images in the last hidden layer (Figure 4)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import UserError


def add_parser(sub: Any) -> None:
    nb = sub.add_parser("neighbors", help="training images nearest to query images in the last hidden layer (Figure 4)")
    nb.add_argument("run", metavar="RUN_OR_CKPT")
    nb.add_argument("--query", nargs="+", required=True, metavar="IMAGE", help="query images")
    nb.add_argument("--data", required=True, metavar="SPEC", help="the dataset whose training images are searched")
    nb.add_argument("--k", type=int, default=6, help="neighbours per query (default 6)")
    nb.add_argument("--layer", default="last", help="the features compared, as `alexnet features --layer` names "
                    "them (default: last, the last hidden layer, as in the paper's Figure 4)")
    nb.add_argument("--max-images", type=int, metavar="N", help="search a random subset of N training images")
    nb.add_argument("--out", metavar="PNG", help="default: RUN/neighbors.png")
    nb.add_argument("--device", default="auto")
    nb.add_argument("--json", action="store_true", help="print the neighbours as JSON")
    nb.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..visualize import nearest_neighbours

    if args.k < 1:
        raise UserError(f"--k: must be at least 1, not {args.k}")
    run = Path(args.run)
    out = Path(args.out) if args.out else (run if run.is_dir() else run.parent) / "neighbors.png"
    r = nearest_neighbours(args.run, args.query, args.data, out, k=args.k, max_images=args.max_images,
                           device=args.device, progress=not args.json, layer=args.layer)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        for q in r["queries"]:
            near = ", ".join(f"{n['label']} ({n['distance']:.1f})" for n in q["neighbours"])
            print(f"{q['query']}: predicted {q['prediction']}; nearest: {near}")
        print(f"wrote {out} ({r['searched']:,} training images searched)")
    return 0
