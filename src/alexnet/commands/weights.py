"""``alexnet weights``: published weights as a run folder."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    w = sub.add_parser("weights", help="published weights as a run folder").add_subparsers(
        dest="what", required=True, metavar="SOURCE"
    )
    wt = w.add_parser("torchvision", help="alexnet_tv with torchvision's AlexNet_Weights.IMAGENET1K_V1")
    wt.add_argument("--out", required=True, metavar="RUN", help="the run folder to write (new or empty)")
    wt.add_argument(
        "--file",
        metavar="PATH",
        help="a state dict saved by torchvision (else its weights API: the torch hub cache, downloading when needed)",
    )
    wt.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..weights import torchvision_weights

    out = torchvision_weights(args.out, args.file)
    print(f"wrote {out}/best.pt: alexnet_tv with torchvision's IMAGENET1K_V1 weights, 1000 ImageNet classes")
    print(f"next: alexnet predict {out} photo.jpg")
    return 0
