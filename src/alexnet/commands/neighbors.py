"""``alexnet neighbors``: training images nearest to query images in the last hidden layer (Figure 4)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import UserError
from ._common import at_least

MAX_K = 32  # neighbours (columns) and queries (rows) of the picture: 32 x 33 thumbnails at the most


def add_parser(sub: Any) -> None:
    nb = sub.add_parser("neighbors", help="training images nearest to query images in the last hidden layer (Figure 4)")
    nb.add_argument("run", metavar="RUN_OR_CKPT")
    nb.add_argument("--query", nargs="+", required=True, metavar="IMAGE", help="query images")
    nb.add_argument("--data", required=True, metavar="SPEC", help="the dataset whose training images are searched")
    nb.add_argument(
        "--k",
        type=at_least(1),
        default=6,
        help=f"neighbours per query (default 6, at most {MAX_K}: a picture's row; at most the images searched)",
    )
    nb.add_argument(
        "--layer",
        default="last",
        help="the features compared, as `alexnet features --layer` names "
        "them (default: last, the last hidden layer, as in the paper's Figure 4)",
    )
    nb.add_argument("--max-images", type=at_least(1), metavar="N", help="search a random subset of N training images")
    nb.add_argument(
        "--out", metavar="PNG", help="default: RUN/neighbors.png (replaced); an existing --out only with --force"
    )
    nb.add_argument("--force", action="store_true", help="replace an existing --out")
    nb.add_argument("--device", default="auto")
    nb.add_argument("--json", action="store_true", help="print the neighbours as JSON")
    nb.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..files import figure_format, new_output
    from ..visualize import nearest_neighbours

    if args.k > MAX_K:
        raise UserError(f"--k {args.k}: at most {MAX_K} (each neighbour is a picture in the query's row)")
    if len(args.query) > MAX_K:
        raise UserError(f"--query: at most {MAX_K} images (each is a row of the picture), not {len(args.query)}")
    if args.out:  # before the work
        figure_format(new_output(args.out, "--out", args.force))
    run = Path(args.run)
    out = Path(args.out) if args.out else (run if run.is_dir() else run.parent) / "neighbors.png"
    r = nearest_neighbours(
        args.run,
        args.query,
        args.data,
        out,
        k=args.k,
        max_images=args.max_images,
        device=args.device,
        progress=not args.json,
        layer=args.layer,
    )
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        for q in r["queries"]:
            near = ", ".join(f"{n['label']} ({n['distance']:.1f})" for n in q["neighbours"])
            print(f"{q['query']}: predicted {q['prediction']}; nearest: {near}")
        print(f"wrote {out} ({r['searched']:,} training images searched)")
    return 0
