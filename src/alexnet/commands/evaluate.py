"""``alexnet evaluate``: top-1/top-5 error, per-class accuracy and confusion matrix."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..config import INTERPOLATIONS
from ..errors import UserError
from ._common import at_least


def add_parser(sub: Any) -> None:
    e = sub.add_parser("evaluate", help="top-1/top-5 error, per-class accuracy and confusion matrix")
    e.add_argument("checkpoint", metavar="RUN_OR_CKPT", help="a run folder (its best.pt) or a checkpoint file")
    e.add_argument("--data", required=True, metavar="SPEC", help="mnist[:ROOT], cifar10[:ROOT] or an image folder")
    e.add_argument("--split", default="val", choices=["val", "train"], help="val means val/ or test/ (default)")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument(
        "--ten-crop",
        action="store_true",
        help="average the softmax over the four corner and centre crops and their mirror images",
    )
    e.add_argument(
        "--out",
        metavar="DIR",
        help="where confusion.png and result.json go (default: RUN/evaluate/, "
        "replaced at each evaluation); files already in an --out DIR are replaced only with --force",
    )
    e.add_argument("--force", action="store_true", help="replace confusion.png and result.json in --out")
    e.add_argument("--batch-size", type=at_least(1), default=256)
    e.add_argument("--workers", type=at_least(0), default=2)
    e.add_argument("--max-images", type=at_least(1), metavar="N", help="evaluate a random subset of N images")
    e.add_argument("--device", default="auto")
    e.add_argument(
        "--precision",
        default="run",
        choices=["run", "auto", "fp32", "bf16", "fp16"],
        help="run: the precision the run trained and validated in (default; auto for weights without a "
        "training config); auto: bf16 on a GPU that has it, else fp32",
    )
    e.add_argument(
        "--ema",
        action="store_true",
        help="evaluate the run's moving average of the weights (trained with --model-ema) instead of the weights",
    )
    e.add_argument(
        "--resize-size",
        type=at_least(1),
        metavar="R",
        help="shorter side resized to R, central square kept (torchvision's --val-resize-size; default: the "
        "checkpoint's own, 256 for AlexNet)",
    )
    e.add_argument(
        "--crop-size",
        type=at_least(1),
        metavar="C",
        help="the central C x C of it is the network's input (torchvision's --val-crop-size; default: the "
        "checkpoint's own)",
    )
    e.add_argument(
        "--interpolation",
        choices=list(INTERPOLATIONS),
        help="how images are resized (default: the checkpoint's, bilinear; antialiased but for nearest)",
    )
    e.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import resolve_checkpoint
    from ..engine.evaluation import plot_confusion
    from ..files import atomic_write_text, new_output
    from ..inference.classifier import load

    if args.out:  # an --out DIR of the user's: its files are replaced only on purpose, checked before the work
        for name in ("confusion.png", "result.json"):
            new_output(Path(args.out) / name, "--out", args.force)
    clf = load(args.checkpoint, args.device, ema=args.ema)
    res = clf.evaluate(
        args.data,
        split=args.split,
        batch_size=args.batch_size,
        workers=args.workers,
        max_images=args.max_images,
        progress=not args.json,
        ten_crop=args.ten_crop,
        precision=args.precision,
        resize_size=args.resize_size,
        crop_size=args.crop_size,
        interpolation=args.interpolation,
    )
    t = clf.transform.resized(args.resize_size, args.crop_size, args.interpolation)  # as evaluate checked it
    if res.n == 0:
        raise UserError(f"--data {args.data}: no images to evaluate in its {args.split} split")
    ck = resolve_checkpoint(args.checkpoint)
    out = Path(args.out) if args.out else (ck if ck.is_dir() else ck.parent) / "evaluate"
    d = res.to_dict() | {
        "checkpoint": str(ck),
        "data": args.data,
        "split": args.split,
        "ten_crop": args.ten_crop,
        "weights": "ema" if args.ema else "model",
        "resize_size": t.image_size,
        "crop_size": t.crop_size,
        "interpolation": t.interpolation,
        "confusion_png": str(out / "confusion.png"),
    }
    saved = True
    try:  # the figures are printed whatever happens to the files
        out.mkdir(parents=True, exist_ok=True)
        plot_confusion(
            res,
            out / "confusion.png",
            f"{clf.name} ({ck.name}) on {args.data} [{args.split}]: "
            f"top-1 {res.top1_error:.2%}, top-{res.k} {res.top5_error:.2%}",
        )
        atomic_write_text(out / "result.json", json.dumps(d, indent=2) + "\n")
    except OSError as e:
        saved = False
        print(
            f"alexnet: warning: could not save the results in {out} ({e.strerror or e}); they are printed "
            "here only (--out DIR writes them elsewhere)",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(d))
        return 0 if saved else 1
    how = "ten-patch average" if args.ten_crop else "centre crop"
    how += f" {t.crop_size} of {t.image_size} ({t.interpolation})"
    which = ", EMA weights" if args.ema else ""
    print(f"{clf.name} ({ck}{which}) on {args.data} [{args.split}], {res.n:,} images, {how}")
    print(f"  top-1 error {res.top1_error:7.2%}   (accuracy {1 - res.top1_error:.2%})")
    print(f"  top-{res.k} error {res.top5_error:7.2%}   (accuracy {1 - res.top5_error:.2%})")
    print(f"  loss        {res.loss:.4f}")
    acc = res.per_class_accuracy
    totals = res.confusion.sum(1).tolist()
    # the classes the data has (all of them, unless it holds a subset of the checkpoint's classes)
    order = sorted((i for i in range(len(acc)) if totals[i] > 0), key=lambda i: acc[i])
    listed = order if len(order) <= 20 else order[:10] + order[-10:]
    print("per-class accuracy" + (" (10 worst and 10 best)" if len(order) > 20 else "") + ":")
    for i in listed:
        print(f"  {clf.labels[i]:<24}{acc[i]:7.2%}  ({int(totals[i])} images)")
    if saved:
        print(f"confusion matrix: {out / 'confusion.png'}; all figures: {out / 'result.json'}")
    return 0 if saved else 1
