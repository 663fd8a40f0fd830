"""The ``alexnet`` command: the only place that reads ``sys.argv``.

    alexnet models [NAME]
    alexnet train --model NAME --data SPEC --out RUN [--recipe FILE] [--epochs N ...]
    alexnet evaluate RUN_OR_CKPT --data SPEC [--json]
    alexnet predict RUN_OR_CKPT IMAGE_OR_DIR... [--top-k 5] [--json]
    alexnet prepare SRC DST [--size 256] [--workers N]
    alexnet demo
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any, Sequence

from .config import TrainConfig
from .errors import UserError


def _fmt_count(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))


# ------------------------------------------------------------------------------------------ models


def cmd_models(args: argparse.Namespace) -> int:
    from .models import list_models, model_info
    from .models.summary import model_summary

    if args.name:
        opts = _parse_options(args.model_opt or [])
        s = model_summary(args.name, **opts)
        info = model_info(args.name)
        c, h, w = s["input_shape"]  # type: ignore[misc]
        print(f"{args.name}: {info.description}")
        print(f"input {c}x{h}x{w}, {s['params']:,} parameters, {_fmt_count(s['macs'])} multiply-adds per image")  # type: ignore[arg-type]
        print("options: " + ", ".join(f"{k}={v!r}" for k, v in info.options().items()))
        print()
        print(f"{'layer':<22}{'type':<22}{'output shape':<18}{'params':>12}{'mult-adds':>12}")
        for r in s["layers"]:  # type: ignore[union-attr]
            shape = "x".join(map(str, r.output_shape))
            print(f"{r.name:<22}{r.kind:<22}{shape:<18}{r.params:>12,}{_fmt_count(r.macs) if r.macs else '':>12}")
        return 0
    print(f"{'model':<14}{'parameters':>14}{'input':>12}{'mult-adds':>12}  description")
    for name in list_models():
        s = model_summary(name)
        c, h, w = s["input_shape"]  # type: ignore[misc]
        print(f"{name:<14}{s['params']:>14,}{f'{c}x{h}x{w}':>12}{_fmt_count(s['macs']):>12}  {s['description']}")  # type: ignore[arg-type]
    return 0


# ------------------------------------------------------------------------------------------ train


def _literal(text: str) -> Any:
    """A flag value as TOML would read it (true, 3, 0.5, "x"); anything else is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _parse_options(items: Sequence[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--model-opt {item!r}: expected KEY=VALUE (e.g. --model-opt lrn=false)")
        out[key.strip()] = _literal(value.strip())
    return out


def _field_comments() -> dict[str, str]:
    """The comment after each TrainConfig field in its source: the flags' help texts."""
    import inspect
    import re

    out = {}
    for line in inspect.getsource(TrainConfig).splitlines():
        m = re.match(r"\s+(\w+): [^=]+=.*?#\s*(.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, all defaulting to 'not given' so the recipe's value stays."""
    hints = typing.get_type_hints(TrainConfig)
    comments = _field_comments()
    for f in dataclasses.fields(TrainConfig):
        if f.name == "model_options":
            continue
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        args = typing.get_args(hint)
        base = next((a for a in args if a is not type(None)), hint) if args else hint
        default = f.default if f.default is not dataclasses.MISSING else None
        helptext = f"{comments.get(f.name, '')} (default: {default})".strip().replace("%", "%%")
        if base is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=helptext)
        else:
            p.add_argument(flag, type=base, default=argparse.SUPPRESS, metavar=f.name.upper(), help=helptext)


def cmd_train(args: argparse.Namespace) -> int:
    from .config import load_recipe
    from .train import train

    values = vars(args)
    cfg = TrainConfig()
    if args.recipe:
        cfg = cfg.update(load_recipe(args.recipe), source=args.recipe)
    flags = {f.name: values[f.name] for f in dataclasses.fields(TrainConfig) if f.name in values}
    cfg = cfg.update(flags, source="flags")
    if args.model_opt:
        cfg.model_options.update(_parse_options(args.model_opt))
    result = train(cfg)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return 0
    f = result.final
    print()
    print(f"done in {result.seconds / 60:.1f} min: best val top-1 error {result.best_top1_error:.2%} (epoch {result.best_epoch})"
          + (f"; last epoch top-1 {f.top1_error:.2%}, top-{f.k} {f.top5_error:.2%} on {f.n:,} images" if f else ""))
    if result.skipped:
        print(f"{len(result.skipped)} unusable image files were skipped (listed above)")
    out = result.out
    print(f"results in {out}/: metrics.csv, curves.png, confusion.png, config.toml, best.pt, last.pt")
    print("next:")
    print(f"  alexnet evaluate {out} --data {cfg.data}")
    print(f"  alexnet predict {out} IMAGE_OR_FOLDER --top-k 5")
    return 0


# ------------------------------------------------------------------------------------------ evaluate


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .checkpoint import resolve_checkpoint
    from .evaluate import plot_confusion
    from .predict import load

    clf = load(args.checkpoint, args.device)
    res = clf.evaluate(args.data, split=args.split, batch_size=args.batch_size, workers=args.workers,
                       max_images=args.max_images, progress=not args.json, ten_crop=args.ten_crop)
    ck = resolve_checkpoint(args.checkpoint)
    out = Path(args.out) if args.out else ck.parent / "evaluate"
    out.mkdir(parents=True, exist_ok=True)
    plot_confusion(res, out / "confusion.png", f"{clf.name} ({ck.name}) on {args.data} [{args.split}]: "
                   f"top-1 {res.top1_error:.2%}, top-{res.k} {res.top5_error:.2%}")
    d = res.to_dict() | {"checkpoint": str(ck), "data": args.data, "split": args.split, "ten_crop": args.ten_crop,
                         "confusion_png": str(out / "confusion.png")}
    (out / "result.json").write_text(json.dumps(d, indent=2) + "\n")
    if args.json:
        print(json.dumps(d))
        return 0
    how = "ten-patch average" if args.ten_crop else "centre crop"
    print(f"{clf.name} ({ck}) on {args.data} [{args.split}], {res.n:,} images, {how}")
    print(f"  top-1 error {res.top1_error:7.2%}   (accuracy {1 - res.top1_error:.2%})")
    print(f"  top-{res.k} error {res.top5_error:7.2%}   (accuracy {1 - res.top5_error:.2%})")
    print(f"  loss        {res.loss:.4f}")
    acc = res.per_class_accuracy
    totals = res.confusion.sum(1).tolist()
    order = sorted(range(len(acc)), key=lambda i: acc[i])
    shown = order if len(order) <= 20 else order[:10] + order[-10:]
    print("per-class accuracy" + (" (10 worst and 10 best)" if len(order) > 20 else "") + ":")
    for i in shown:
        print(f"  {res.classes[i]:<24}{acc[i]:7.2%}  ({int(totals[i])} images)")
    print(f"confusion matrix: {out / 'confusion.png'}; all figures: {out / 'result.json'}")
    return 0


# ------------------------------------------------------------------------------------------ predict


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import Prediction, expand_inputs, load

    if args.top_k < 1:
        raise UserError(f"--top-k must be at least 1, not {args.top_k}")
    clf = load(args.checkpoint, args.device)
    preds: list[dict[str, object]] = []
    errors: list[dict[str, str]] = []
    for r in clf.predict_paths(expand_inputs(args.images), args.top_k):
        if isinstance(r, Prediction):
            preds.append(r.to_dict())
            if not args.json:
                print(r.path)
                for rank, (label, p) in enumerate(zip(r.labels, r.probs), 1):
                    print(f"  {rank}. {label:<24} {p:7.2%}")
        else:
            errors.append({"path": r[0], "error": r[1]})
            print(f"alexnet: error: {r[0]}: {r[1]}", file=sys.stderr)
    if args.json:
        print(json.dumps({"checkpoint": str(args.checkpoint), "predictions": preds, "errors": errors}))
    if not preds and not errors:
        raise UserError("no image files found in " + " ".join(args.images))
    return 1 if errors else 0


# ------------------------------------------------------------------------------------------ prepare


def cmd_prepare(args: argparse.Namespace) -> int:
    from .prepare import prepare

    summary = prepare(args.src, args.dst, size=args.size, workers=args.workers)
    print("\n".join(summary.lines()))
    print(f"next: alexnet train --data {summary.dst} --model alexnet --out RUN")
    return 0


# ------------------------------------------------------------------------------------------ bench


def cmd_bench_loader(args: argparse.Namespace) -> int:
    from .bench import bench_loader

    r = bench_loader(args.data, packed=args.packed, batch_size=args.batch_size, workers=args.workers,
                     batches=args.batches, repeats=args.repeats)
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"training batches of augmented 224x224 crops, batch {r['batch_size']}, {r['workers']} workers, "
          f"{r['train_images']:,} images, median of {len(r['runs_packed'])} runs of {r['batches_per_run']} batches:")
    print(f"  torchvision ImageFolder + RandomResizedCrop: {r['torchvision_images_per_sec']:8.0f} img/s  "
          f"({r['jpeg_bytes'] / 1e6:.1f} MB of JPEGs)")
    print(f"  packed (alexnet prepare) + batch crops:     {r['images_per_sec']:8.0f} img/s  "
          f"({r['packed_bytes'] / 1e6:.1f} MB on disk; uint8, normalised on the device)")
    print(f"  the same, normalised on the CPU as well:    {r['packed_normalised_images_per_sec']:8.0f} img/s")
    print(f"  speed-up: {r['speedup']:.1f}x ({r['speedup_normalised']:.1f}x with CPU normalisation)")
    return 0


# ------------------------------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="alexnet", description="AlexNet (2012) and LeNet-5, faithful to the papers.")
    p.add_argument("--version", action="version", version=f"alexnet {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    m = sub.add_parser("models", help="list the networks, or show one's layer table")
    m.add_argument("name", nargs="?", help="a model name: print its layers, output shapes and parameters")
    m.add_argument("--model-opt", action="append", metavar="KEY=VALUE", help="a builder option, e.g. lrn=false")
    m.set_defaults(func=cmd_models)

    t = sub.add_parser("train", help="train a network (a recipe file, then flags)",
                       description="Train a network. Values come from the defaults, then --recipe, then the flags.")
    t.add_argument("--recipe", metavar="FILE", help="a TOML recipe (a shipped name such as lenet5_mnist, or a path)")
    t.add_argument("--model-opt", action="append", metavar="KEY=VALUE",
                   help="a model option (repeatable), e.g. --model-opt activation=tanh --model-opt lrn=false")
    _add_config_flags(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="top-1/top-5 error, per-class accuracy and confusion matrix")
    e.add_argument("checkpoint", metavar="RUN_OR_CKPT", help="a run folder (its best.pt) or a checkpoint file")
    e.add_argument("--data", required=True, metavar="SPEC", help="mnist[:ROOT], cifar10[:ROOT] or an image folder")
    e.add_argument("--split", default="val", choices=["val", "train"], help="val means val/ or test/ (default)")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--ten-crop", action="store_true",
                   help="average the softmax over the four corner and centre crops and their mirror images")
    e.add_argument("--out", metavar="DIR", help="where confusion.png and result.json go (default: beside the checkpoint)")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--workers", type=int, default=2)
    e.add_argument("--max-images", type=int, metavar="N", help="evaluate a random subset of N images")
    e.add_argument("--device", default="auto")
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("predict", help="top-k labels of images")
    r.add_argument("checkpoint", metavar="RUN_OR_CKPT")
    r.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR")
    r.add_argument("--top-k", type=int, default=5)
    r.add_argument("--json", action="store_true", help="print one JSON object")
    r.add_argument("--device", default="auto")
    r.set_defaults(func=cmd_predict)

    pp = sub.add_parser("prepare", help="pack an image folder into the fast memory-mapped format",
                        description="Resize every image (shorter side SIZE, central square), store them in one "
                        "memory-mapped file per split with the class list and the training-set statistics. "
                        "Interrupt and rerun to finish.")
    pp.add_argument("src", metavar="SRC", help="an image folder with train/ and val/ (or test/), or an archive of one")
    pp.add_argument("dst", metavar="DST", help="the packed dataset folder to write")
    pp.add_argument("--size", type=int, default=256, help="side of the stored images (default: 256, the paper's)")
    pp.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2)), help="decoding processes")
    pp.set_defaults(func=cmd_prepare)

    b = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="what", required=True, metavar="WHAT")
    bl = b.add_parser("loader", help="packed format against torchvision's ImageFolder pipeline, images/s")
    bl.add_argument("--data", required=True, metavar="DIR", help="an image folder (train/ with class folders)")
    bl.add_argument("--packed", metavar="DST", help="where to pack it (default: a temporary folder)")
    bl.add_argument("--batch-size", type=int, default=128)
    bl.add_argument("--workers", type=int, default=2)
    bl.add_argument("--batches", type=int, default=20, help="batches timed per run")
    bl.add_argument("--repeats", type=int, default=3, help="runs of each side, alternating; medians reported")
    bl.add_argument("--json", action="store_true", help="print one JSON object")
    bl.set_defaults(func=cmd_bench_loader)

    d = sub.add_parser("demo", help="train on the bundled CIFAR-10 sample, evaluate, and classify a few images")
    d.add_argument("--out", default="runs/demo", help="the run folder (default: runs/demo)")
    d.add_argument("--epochs", type=int, default=None)
    d.set_defaults(func=lambda a: __import__("alexnet.demo", fromlist=["main"]).main(a))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"alexnet: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("alexnet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
