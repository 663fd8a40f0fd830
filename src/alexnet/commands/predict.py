"""``alexnet predict``: top-k labels of images."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import UserError
from ._common import shown


def add_parser(sub: Any) -> None:
    r = sub.add_parser(
        "predict",
        help="top-k labels of images",
        usage="alexnet predict RUN_OR_CKPT IMAGE_OR_DIR... [options]\n"
        "       alexnet predict --onnx FILE IMAGE_OR_DIR... [options]",
    )
    r.add_argument(
        "checkpoint",
        nargs="?",
        metavar="RUN_OR_CKPT",
        help="a run folder, checkpoint, export folder or hf-hub:ORG/NAME (omitted with --onnx)",
    )
    r.add_argument("images", nargs="*", metavar="IMAGE_OR_DIR")
    r.add_argument(
        "--onnx",
        metavar="FILE",
        help="a model.onnx from `alexnet export --format onnx`, run with ONNX Runtime (torch is not imported)",
    )
    r.add_argument("--threads", type=int, metavar="N", help="ONNX Runtime's intra-op threads (default: its own choice)")
    r.add_argument("--top-k", type=int, default=5)
    r.add_argument("--json", action="store_true", help="print one JSON object")
    r.add_argument("--device", default="auto")
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..inference.base import Prediction, expand_inputs  # no torch

    if args.top_k < 1:
        raise UserError(f"--top-k must be at least 1, not {args.top_k}")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1, not {args.threads}")
    if args.onnx:  # every positional is an image; torch is never imported
        args.images = [args.checkpoint, *args.images] if args.checkpoint else args.images
        args.checkpoint = args.onnx
        if not Path(args.onnx).is_file():  # a missing model is named first
            raise UserError(f"--onnx {args.onnx}: no such file")
    if not args.checkpoint:
        raise UserError("predict: give a run (RUN_OR_CKPT) or --onnx FILE, then the images")
    if not args.images:
        raise UserError("predict: give the images (files or folders) to classify")
    if not args.onnx:
        from ..checkpoint import resolve_checkpoint

        resolve_checkpoint(args.checkpoint)  # a missing checkpoint is named first
    missing = [p for p in args.images if not os.path.lexists(p)]
    if len(missing) == len(args.images):  # nothing to do: a user mistake, exit 2
        raise UserError(
            f"{missing[0]}: no such file or folder" + (f" (nor {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    if args.onnx:
        from ..inference.onnx import OnnxClassifier

        clf: Any = OnnxClassifier(args.onnx, threads=args.threads)
    else:
        from ..inference.classifier import load

        clf = load(args.checkpoint, args.device)
    preds: list[dict[str, object]] = []
    errors: list[dict[str, str]] = []

    def note(path: str, why: str) -> None:
        errors.append({"path": path, "error": why})
        print(f"alexnet: error: {shown(path)}: {why}", file=sys.stderr)

    for r in clf.predict_paths(expand_inputs(args.images, note), args.top_k):
        if isinstance(r, Prediction):
            preds.append(r.to_dict())
            if not args.json:
                print(shown(r.path))
                for rank, (label, p) in enumerate(zip(r.labels, r.probs), 1):
                    print(f"  {rank}. {label:<24} {p:7.2%}")
        else:
            errors.append({"path": r[0], "error": r[1]})
            print(f"alexnet: error: {shown(r[0])}: {r[1]}", file=sys.stderr)
    if args.json:
        print(json.dumps({"checkpoint": str(args.checkpoint), "predictions": preds, "errors": errors}))
    if not preds and not errors:
        raise UserError("no image files found in " + " ".join(args.images))
    return 1 if errors else 0
