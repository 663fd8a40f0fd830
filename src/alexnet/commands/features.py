"""``alexnet features``: hidden-layer features of a dataset or of images, to a .npz."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import UserError
from ._common import at_least, shown


def add_parser(sub: Any) -> None:
    fe = sub.add_parser("features", help="hidden-layer features of a dataset or of images, to a .npz")
    fe.add_argument("run", metavar="RUN_OR_EXPORT")
    fe.add_argument("images", nargs="*", metavar="IMAGE_OR_DIR")
    fe.add_argument("--data", metavar="SPEC", help="a dataset SPEC: its training images")
    fe.add_argument(
        "--layer",
        help="fc7, fc6, pool5 (alexnet, alexnet_tv) or last (any model; the input of the "
        "output layer). Default: fc7 where the model has it, else last",
    )
    fe.add_argument("--out", metavar="FILE.npz", help="features, labels and paths (written under exactly this name)")
    fe.add_argument("--force", action="store_true", help="replace an existing --out")
    fe.add_argument("--json", action="store_true", help="print the vectors as JSON (for a few images)")
    fe.add_argument("--batch-size", type=at_least(1), default=64)
    fe.add_argument("--max-images", type=at_least(1), metavar="N", help="a random subset of N dataset images")
    fe.add_argument("--device", default="auto")
    fe.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..files import atomic_write, new_output
    from ..inference.features import extract_features

    if bool(args.data) == bool(args.images):
        raise UserError("features: give --data SPEC or image files, not both and not neither")
    if not args.out and not args.json:  # before the work, not after it
        raise UserError("features: give --out FILE.npz (or --json)")
    out = new_output(args.out, "--out", args.force) if args.out else None
    r = extract_features(
        args.run,
        layer=args.layer,
        data=args.data,
        images=args.images or (),
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.json,
        max_images=args.max_images,
    )
    for path, why in r["errors"]:
        print(f"alexnet: error: {shown(path)}: {why}", file=sys.stderr)
    if not r["paths"]:
        raise UserError("features: no readable images in " + (args.data or " ".join(map(shown, args.images))))
    if args.json:
        print(
            json.dumps(
                {
                    "model": r["model"],
                    "layer": r["layer"],
                    "features": [
                        {"path": p, "label": int(lab), "vector": vec.tolist()}
                        for p, lab, vec in zip(r["paths"], r["labels"], r["features"])
                    ],
                }
            )
        )
    if out is not None:
        try:  # a file object: numpy writes exactly this name (given a path it would append .npz)
            atomic_write(
                out, lambda f: np.savez(f, features=r["features"], labels=r["labels"], paths=np.asarray(r["paths"]))
            )
        except OSError as e:
            raise UserError(f"--out {args.out}: cannot write ({e.strerror or e}); nothing was replaced") from None
        if not args.json:
            print(
                f"wrote {shown(out)}: {r['features'].shape[0]:,} x {r['features'].shape[1]:,} {r['layer']} features "
                f"of {r['model']}"
            )
    return 1 if r["errors"] else 0
