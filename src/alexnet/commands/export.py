"""``alexnet export``: a run as model.safetensors + config.json + model card (Hugging Face layout), or
as one ONNX file."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    ex = sub.add_parser(
        "export",
        help="a run as model.safetensors + config.json + model card (Hugging Face layout), or as one ONNX file",
    )
    ex.add_argument("run", metavar="RUN_OR_CKPT")
    ex.add_argument(
        "--format",
        default="safetensors",
        choices=["safetensors", "onnx"],
        help="safetensors: a folder in the Hugging Face layout; onnx: one .onnx file for ONNX Runtime "
        "(dynamic batch, preprocessing inside the graph, checked against torch)",
    )
    ex.add_argument("--out", metavar="DIR_OR_FILE", help="default: RUN/export (safetensors), RUN/model.onnx (onnx)")
    ex.add_argument(
        "--ema", action="store_true", help="export the run's moving average of the weights (--model-ema) instead"
    )
    ex.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export import export_onnx, export_safetensors

    if args.format == "onnx":
        r = export_onnx(args.run, args.out, ema=args.ema)
        print(
            f"wrote {r['path']} ({r['bytes'] / 2**20:.1f} MiB, {r['model']}, {r['classes']} classes, dynamic batch); "
            f"ONNX Runtime agrees with torch to {r['max_abs_diff']:.1e} (max abs difference of the probabilities)"
        )
        print(f"use it: alexnet predict --onnx {r['path']} IMAGE...")
        return 0
    out = export_safetensors(args.run, args.out, ema=args.ema)
    print(f"wrote {out}/model.safetensors, config.json, README.md; load it with alexnet.load({str(out)!r})")
    return 0
