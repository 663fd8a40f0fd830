"""The ``alexnet`` command: the only place that reads ``sys.argv``.

    alexnet models [NAME]
    alexnet train --model NAME --data SPEC --out RUN [--recipe FILE] [--epochs N ...]
    alexnet evaluate RUN_OR_CKPT --data SPEC [--json]
    alexnet predict RUN_OR_CKPT IMAGE_OR_DIR... [--top-k 5] [--json]
    alexnet predict --onnx FILE IMAGE_OR_DIR...
    alexnet export RUN --format safetensors|onnx [--out PATH]
    alexnet serve RUN_OR_EXPORT [--host 127.0.0.1] [--port 8000] [--workers N] [--max-batch 32] [--onnx]
    alexnet prepare SRC DST [--size 256] [--workers N]
    alexnet demo
    alexnet experiment list | NAME --data SPEC --out DIR [--seeds K] [--epochs N]
    alexnet report DIR... [--out FILE.md]
    alexnet visualize kernels RUN [--out PNG]
    alexnet neighbors RUN --query IMAGE... --data SPEC [--k 6] [--out PNG]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
from ._toml import tomllib
import typing
from pathlib import Path
from typing import Any, Sequence

from .config import TrainConfig
from .errors import CheckFailed, UserError


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
        if f.name == "resume":  # --resume (with --out RUN), or --resume RUN alone
            p.add_argument(flag, nargs="?", const=True, default=argparse.SUPPRESS, metavar="RUN",
                           help="continue the run in RUN (or in --out) from its config.toml and last.pt; other flags "
                                "may change only epochs, workers, device and how often it checkpoints and logs")
        elif base is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=helptext)
        elif typing.get_origin(base) in (list, dict):
            p.add_argument(flag, type=_literal, default=argparse.SUPPRESS, metavar=f.name.upper(),
                           help=helptext + " (TOML syntax, e.g. [120, 130] or {fc10 = 1.0})")
        else:
            p.add_argument(flag, type=base, default=argparse.SUPPRESS, metavar=f.name.upper(), help=helptext)


# The shipped recipe for a model and a kind of data, used when `train` gets no --recipe.
DEFAULT_RECIPES = {("lenet5", "mnist"): "lenet5_mnist", ("cifar_18pct", "cifar10"): "cifar_18pct_cifar10",
                   ("cifar_80sec", "cifar10"): "cifar_80sec_cifar10", ("alexnet", "folder"): "alexnet_imagenet",
                   ("alexnet_tv", "folder"): "alexnet_tv_imagenet"}


def default_recipe(model: str, data: str) -> str | None:
    from .data.datasets import DataSpec

    if not data:
        return None
    return DEFAULT_RECIPES.get((model, DataSpec.parse(data).kind))


def cmd_train(args: argparse.Namespace) -> int:
    from .config import load_recipe
    from .train import train

    values = vars(args)
    flags = {f.name: values[f.name] for f in dataclasses.fields(TrainConfig) if f.name in values}
    resume = flags.pop("resume", False)
    cfg = TrainConfig()
    if isinstance(resume, str):  # --resume RUN: the run's own config, then the flags allowed to change
        run = Path(resume)
        if "out" in flags and Path(flags["out"]) != run:
            raise UserError(f"--resume {resume} and --out {flags['out']}: give the run folder once")
        if args.recipe:
            raise UserError("--resume RUN continues RUN with its own config.toml; leave out --recipe")
        if not (run / "config.toml").is_file():
            raise UserError(f"--resume {resume}: no config.toml there (not a run folder?)")
        cfg = cfg.update(load_recipe(run / "config.toml"), source=str(run / "config.toml"))
        flags["out"] = resume
    elif args.recipe and args.recipe.lower() != "none":
        cfg = cfg.update(load_recipe(args.recipe), source=args.recipe)
    elif not args.recipe:
        model = flags.get("model", cfg.model)
        shipped = default_recipe(model, flags.get("data", ""))
        if shipped:
            print(f"using the shipped recipe {shipped} for {model} on this data (--recipe none for the plain "
                  "defaults)", file=sys.stderr)
            cfg = cfg.update(load_recipe(shipped), source=shipped)
    model_given = "model" in flags or cfg.model != TrainConfig().model
    cfg = cfg.update(flags, source="flags")
    cfg.resume = bool(resume)
    if cfg.init and not model_given:  # fine-tuning: the model is the source's
        from .checkpoint import load_checkpoint

        cfg.model = load_checkpoint(cfg.init)["model_name"]
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
    out = Path(args.out) if args.out else (ck if ck.is_dir() else ck.parent) / "evaluate"
    d = res.to_dict() | {"checkpoint": str(ck), "data": args.data, "split": args.split, "ten_crop": args.ten_crop,
                         "confusion_png": str(out / "confusion.png")}
    saved = True
    try:  # the figures are printed whatever happens to the files
        out.mkdir(parents=True, exist_ok=True)
        plot_confusion(res, out / "confusion.png", f"{clf.name} ({ck.name}) on {args.data} [{args.split}]: "
                       f"top-1 {res.top1_error:.2%}, top-{res.k} {res.top5_error:.2%}")
        tmp = out / ".result.json.tmp"
        tmp.write_text(json.dumps(d, indent=2) + "\n")
        os.replace(tmp, out / "result.json")
    except OSError as e:
        saved = False
        print(f"alexnet: warning: could not save the results in {out} ({e.strerror or e}); they are printed "
              "here only (--out DIR writes them elsewhere)", file=sys.stderr)
    if args.json:
        print(json.dumps(d))
        return 0 if saved else 1
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
    if saved:
        print(f"confusion matrix: {out / 'confusion.png'}; all figures: {out / 'result.json'}")
    return 0 if saved else 1


# ------------------------------------------------------------------------------------------ predict


def cmd_predict(args: argparse.Namespace) -> int:
    from .prediction import Prediction, expand_inputs

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
        from .checkpoint import resolve_checkpoint

        resolve_checkpoint(args.checkpoint)  # a missing checkpoint is named first
    missing = [p for p in args.images if not os.path.lexists(p)]
    if len(missing) == len(args.images):  # nothing to do: a user mistake, exit 2
        raise UserError(f"{missing[0]}: no such file or folder" + (f" (nor {len(missing) - 1} more)" if len(missing) > 1 else ""))
    if args.onnx:
        from .onnx_runtime import OnnxClassifier

        clf: Any = OnnxClassifier(args.onnx, threads=args.threads)
    else:
        from .predict import load

        clf = load(args.checkpoint, args.device)
    preds: list[dict[str, object]] = []
    errors: list[dict[str, str]] = []

    def note(path: str, why: str) -> None:
        errors.append({"path": path, "error": why})
        print(f"alexnet: error: {path}: {why}", file=sys.stderr)

    for r in clf.predict_paths(expand_inputs(args.images, note), args.top_k):
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


def cmd_bench_train(args: argparse.Namespace) -> int:
    from .bench import bench_train

    for flag, v in (("--batch-size", args.batch_size), ("--steps", args.steps), ("--repeats", args.repeats)):
        if v < 1:
            raise UserError(f"{flag}: must be at least 1, not {v}")
    if args.jpeg_dir and not Path(args.jpeg_dir).is_dir():
        raise UserError(f"--jpeg-dir {args.jpeg_dir}: not a folder")
    results = bench_train(args.model, batch_size=args.batch_size, precision=args.precision, compile=args.compile,
                          compile_mode=args.compile_mode, channels_last=args.channels_last,
                          cuda_graphs=args.cuda_graphs, data=args.data, jpeg_dir=args.jpeg_dir, steps=args.steps,
                          warmup=args.warmup, repeats=args.repeats, device=args.device, workers=args.workers,
                          log=(lambda s: None) if args.json else None)
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results))
        return 0
    r0 = results[0]
    print(f"training images/s, batch {r0['batch_size']}, {r0['precision']}, channels_last={r0['channels_last']}, "
          f"compile={r0['compile']}, cuda_graphs={r0['cuda_graphs']}; {r0['device']}, torch {r0['torch']}; "
          f"median of {r0['repeats']} runs of {r0['steps']} steps")

    def f(v: Any, fmt: str = "{:,.1f}") -> str:
        return "—" if v is None else fmt.format(v)

    print("| model | step (synthetic) | without LRN | LRN share | end to end | end to end / step | "
          "torchvision reference | ratio | step FLOP/s of matmul |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| `{r['model']}` | {f(r['step_images_per_sec'])} | {f(r['step_without_lrn_images_per_sec'])} | "
              f"{f(r['lrn_share'], '{:.0%}')} | {f(r['images_per_sec'])} | {f(r['end_to_end_over_step'], '{:.0%}')} | "
              f"{f(r['baseline_images_per_sec'])} | {f(r['ratio'], '{:.2f}x')} | "
              f"{f(r['step_flops_fraction'], '{:.0%}')} |")
    print(f"matmul: {r0['matmul_flops'] / 1e9:,.0f} GFLOP/s ({r0['precision']})")
    return 0


# ------------------------------------------------------------------------------------------ share


def cmd_weights(args: argparse.Namespace) -> int:
    from .share import torchvision_weights

    out = torchvision_weights(args.out, args.file)
    print(f"wrote {out}/best.pt: alexnet_tv with torchvision's IMAGENET1K_V1 weights, 1000 ImageNet classes")
    print(f"next: alexnet predict {out} photo.jpg")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .share import export_onnx, export_safetensors

    if args.format == "onnx":
        r = export_onnx(args.run, args.out)
        print(f"wrote {r['path']} ({r['bytes'] / 2**20:.1f} MiB, {r['model']}, {r['classes']} classes, dynamic batch); "
              f"ONNX Runtime agrees with torch to {r['max_abs_diff']:.1e} (max abs difference of the probabilities)")
        print(f"use it: alexnet predict --onnx {r['path']} IMAGE...")
        return 0
    out = export_safetensors(args.run, args.out)
    print(f"wrote {out}/model.safetensors, config.json, README.md; load it with alexnet.load({str(out)!r})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import ServeOptions, parse_size, serve

    opts = ServeOptions(max_batch=args.max_batch, max_bytes=parse_size(args.max_bytes), max_files=args.max_files,
                        max_pixels=args.max_pixels, batch_window_ms=args.batch_window_ms, top_k=args.top_k)
    serve(args.run, host=args.host, port=args.port, workers=args.workers, onnx=args.onnx, device=args.device,
          options=opts, log_level=args.log_level)
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    import numpy as np

    from .share import extract_features

    if bool(args.data) == bool(args.images):
        raise UserError("features: give --data SPEC or image files, not both and not neither")
    if not args.out and not args.json:  # before the work, not after it
        raise UserError("features: give --out FILE.npz (or --json)")
    r = extract_features(args.run, layer=args.layer, data=args.data, images=args.images or (),
                         batch_size=args.batch_size, device=args.device, progress=not args.json,
                         max_images=args.max_images)
    for path, why in r["errors"]:
        print(f"alexnet: error: {path}: {why}", file=sys.stderr)
    if args.json:
        print(json.dumps({"model": r["model"], "layer": r["layer"], "features": [
            {"path": p, "label": int(lab), "vector": vec.tolist()}
            for p, lab, vec in zip(r["paths"], r["labels"], r["features"])]}))
    if args.out:
        try:
            np.savez(args.out, features=r["features"], labels=r["labels"], paths=np.asarray(r["paths"]))
        except OSError as e:
            raise UserError(f"--out {args.out}: cannot write ({e.strerror or e})") from None
        if not args.json:
            print(f"wrote {args.out}: {r['features'].shape[0]:,} x {r['features'].shape[1]:,} {r['layer']} features "
                  f"of {r['model']}")
    return 1 if r["errors"] else 0


# ------------------------------------------------------------------------------------------ experiments


def cmd_experiment(args: argparse.Namespace) -> int:
    from .experiments import EXPERIMENTS, run_experiment

    if args.name == "list":
        print(f"{'experiment':<14}{'data':<9}{'seeds':>6}{'epochs':>7}{'images':>8}{'minutes':>9}  claim")
        for spec in EXPERIMENTS.values():
            minutes = f"{spec.minutes:.0f}" if spec.minutes else "?"
            print(f"{spec.name:<14}{spec.data:<9}{spec.seeds:>6}{spec.epochs:>7}{spec.train_images or 'all':>8}"
                  f"{minutes:>9}  {spec.title}")
        print("\nminutes: the default settings on a 2-core CPU (see the README's \"Reproducing the paper\")")
        return 0
    if args.name not in EXPERIMENTS:
        raise UserError(f"experiment {args.name!r}: not one of {', '.join(EXPERIMENTS)} (see `alexnet experiment list`)")
    spec = EXPERIMENTS[args.name]
    data = args.data or spec.data
    out = args.out or f"runs/experiments/{spec.name}"
    command = "alexnet " + shlex.join(args.argv) if getattr(args, "argv", None) else None
    r = run_experiment(spec.name, data, out, seeds=args.seeds, epochs=args.epochs, train_images=args.train_images,
                       val_images=args.val_images, device=args.device, progress=not args.quiet, command=command)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"\n{r['title']}")
    width = max(len(row["quantity"]) for row in r["table"])
    for row in r["table"]:
        print(f"  {row['quantity']:<{width}}  paper: {row['paper']:<14}  ours: {row['ours']}")
    print(f"verdict: {r['verdict']['status']}: {r['verdict']['reason']}")
    print(f"{r['seconds'] / 60:.1f} min; {out}/report.md, {out}/result.json, " + ", ".join(f"{out}/{p}" for p in r["plots"]))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .experiments.report import write_report

    md, page = write_report(args.dirs, args.out)
    print(f"wrote {md} and {page}")
    return 0


def cmd_visualize(args: argparse.Namespace) -> int:
    from .predict import load
    from .visualize import plot_kernels

    clf = load(args.run, args.device)
    columns = int(clf.checkpoint.get("model_options", {}).get("columns", 2 if clf.name == "alexnet" else 1))
    run = Path(args.run)
    out = Path(args.out) if args.out else (run if run.is_dir() else run.parent) / "kernels.png"
    plot_kernels(clf.model, out, columns=columns)
    print(f"wrote {out}")
    return 0


def cmd_neighbors(args: argparse.Namespace) -> int:
    from .visualize import nearest_neighbours

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
    t.add_argument("--recipe", metavar="FILE", help="a TOML recipe (a shipped name such as lenet5_mnist, or a path); "
                   "without it, the shipped recipe for --model and the kind of --data when there is one "
                   "(--recipe none: the plain defaults)")
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

    r = sub.add_parser("predict", help="top-k labels of images",
                       usage="alexnet predict RUN_OR_CKPT IMAGE_OR_DIR... [options]\n"
                             "       alexnet predict --onnx FILE IMAGE_OR_DIR... [options]")
    r.add_argument("checkpoint", nargs="?", metavar="RUN_OR_CKPT", help="a run folder, checkpoint, export folder or hf-hub:ORG/NAME "
                   "(omitted with --onnx)")
    r.add_argument("images", nargs="*", metavar="IMAGE_OR_DIR")
    r.add_argument("--onnx", metavar="FILE", help="a model.onnx from `alexnet export --format onnx`, run with ONNX "
                   "Runtime (torch is not imported)")
    r.add_argument("--threads", type=int, metavar="N", help="ONNX Runtime's intra-op threads (default: its own choice)")
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
    bt = b.add_parser("train", help="training images/s: the step on synthetic data, end to end, torchvision's reference",
                      description="Training throughput of one or more models: the training step on synthetic data "
                      "already on the device (the ceiling), the same without response normalisation (the LRN's "
                      "share), end to end from --data through the training loop's input pipeline, and "
                      "torchvision's reference style on --jpeg-dir; the arms interleaved, medians reported.")
    bt.add_argument("--model", nargs="+", default=["alexnet"], metavar="NAME", help="one or more models (default: alexnet)")
    bt.add_argument("--batch-size", type=int, default=64)
    bt.add_argument("--precision", default="bf16", choices=["auto", "fp32", "bf16", "fp16"])
    bt.add_argument("--compile", action="store_true", help="torch.compile the network")
    bt.add_argument("--compile-mode", default="default",
                    choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"])
    bt.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    bt.add_argument("--cuda-graphs", action="store_true", help="replay the forward+backward as a CUDA graph")
    bt.add_argument("--data", metavar="SPEC", help="a packed dataset (or any --data SPEC) for the end-to-end rate")
    bt.add_argument("--jpeg-dir", metavar="DIR", help="an image folder for torchvision's reference pipeline")
    bt.add_argument("--steps", type=int, default=5, help="steps timed per run")
    bt.add_argument("--warmup", type=int, default=2, help="steps before the first timed run")
    bt.add_argument("--repeats", type=int, default=3, help="runs of each arm, interleaved; medians reported")
    bt.add_argument("--workers", type=int, default=2, help="loader threads / processes (the reference's too)")
    bt.add_argument("--device", default="auto")
    bt.add_argument("--json", action="store_true", help="print one JSON object (a list for several models)")
    bt.set_defaults(func=cmd_bench_train)

    w = sub.add_parser("weights", help="published weights as a run folder").add_subparsers(
        dest="what", required=True, metavar="SOURCE")
    wt = w.add_parser("torchvision", help="alexnet_tv with torchvision's AlexNet_Weights.IMAGENET1K_V1")
    wt.add_argument("--out", required=True, metavar="RUN", help="the run folder to write (new or empty)")
    wt.add_argument("--file", metavar="PATH", help="a state dict saved by torchvision (else its weights API: the "
                    "torch hub cache, downloading when needed)")
    wt.set_defaults(func=cmd_weights)

    ex = sub.add_parser("export", help="a run as model.safetensors + config.json + model card (Hugging Face layout), "
                        "or as one ONNX file")
    ex.add_argument("run", metavar="RUN_OR_CKPT")
    ex.add_argument("--format", default="safetensors", choices=["safetensors", "onnx"],
                    help="safetensors: a folder in the Hugging Face layout; onnx: one .onnx file for ONNX Runtime "
                    "(dynamic batch, preprocessing inside the graph, checked against torch)")
    ex.add_argument("--out", metavar="DIR_OR_FILE", help="default: RUN/export (safetensors), RUN/model.onnx (onnx)")
    ex.set_defaults(func=cmd_export)

    sv = sub.add_parser("serve", help="a web page and a JSON API that classify uploaded images",
                        description="Serve a classifier over HTTP: GET / (a page), POST /v1/classify (multipart "
                        "'file' fields or a raw image body, ?top_k=), GET /v1/model, /healthz, /metrics "
                        "(Prometheus). Requests that arrive together are classified in one batch.")
    sv.add_argument("run", metavar="RUN_OR_EXPORT", help="a run folder, checkpoint, export folder, hf-hub:ORG/NAME "
                    "or a model.onnx")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only; "
                    "0.0.0.0 for every interface)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--workers", type=int, default=1, help="server processes, each with its own copy of the model")
    sv.add_argument("--max-batch", type=int, default=32, help="most images per forward pass (default: 32)")
    sv.add_argument("--batch-window-ms", type=float, default=5.0,
                    help="how long the first image of a batch waits for company (default: 5 ms)")
    sv.add_argument("--max-bytes", default="20MB", help="largest request body; larger ones get 413 (default: 20MB)")
    sv.add_argument("--max-files", type=int, default=32, help="most files in one request (default: 32)")
    sv.add_argument("--max-pixels", type=int, default=50_000_000,
                    help="largest image in pixels; larger ones are refused as decompression bombs (default: 50M)")
    sv.add_argument("--top-k", type=int, default=5, help="classes per image when the request does not say")
    sv.add_argument("--onnx", action="store_true", help="run the model with ONNX Runtime (the run's model.onnx, "
                    "else one exported once per checkpoint into ~/.cache/alexnet/onnx)")
    sv.add_argument("--device", default="auto")
    sv.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    sv.set_defaults(func=cmd_serve)

    fe = sub.add_parser("features", help="hidden-layer features of a dataset or of images, to a .npz")
    fe.add_argument("run", metavar="RUN_OR_EXPORT")
    fe.add_argument("images", nargs="*", metavar="IMAGE_OR_DIR")
    fe.add_argument("--data", metavar="SPEC", help="a dataset SPEC: its training images")
    fe.add_argument("--layer", help="fc7, fc6, pool5 (alexnet, alexnet_tv) or last (any model; the input of the "
                    "output layer). Default: fc7 where the model has it, else last")
    fe.add_argument("--out", metavar="FILE.npz", help="features, labels and paths")
    fe.add_argument("--json", action="store_true", help="print the vectors as JSON (for a few images)")
    fe.add_argument("--batch-size", type=int, default=64)
    fe.add_argument("--max-images", type=int, metavar="N", help="a random subset of N dataset images")
    fe.add_argument("--device", default="auto")
    fe.set_defaults(func=cmd_features)

    d = sub.add_parser("demo", help="train on the bundled CIFAR-10 sample, evaluate, and classify a few images")
    d.add_argument("--out", default="runs/demo", help="the run folder (default: runs/demo)")
    d.add_argument("--epochs", type=int, default=None)
    d.set_defaults(func=lambda a: __import__("alexnet.demo", fromlist=["main"]).main(a))

    x = sub.add_parser("experiment", help="reproduce one of the paper's claims (`alexnet experiment list`)",
                       description="Run one of the paper's claims as an experiment: trains its arms over seeds, then "
                       "writes result.json, report.md and plots into --out. Finished runs are reused when rerun.")
    x.add_argument("name", metavar="NAME", help="an experiment name, or 'list'")
    x.add_argument("--data", metavar="SPEC", help="cifar10[:ROOT], mnist[:ROOT] or an image folder (default: the kind the experiment uses)")
    x.add_argument("--out", metavar="DIR", help="the experiment folder (default: runs/experiments/NAME)")
    x.add_argument("--seeds", type=int, metavar="K", help="seeds per arm (default: the experiment's)")
    x.add_argument("--epochs", type=int, metavar="N", help="epochs per run (default: the experiment's)")
    x.add_argument("--train-images", type=int, metavar="N", help="train on a random subset of N images per seed")
    x.add_argument("--val-images", type=int, metavar="N", help="test on a random subset of N images")
    x.add_argument("--device", default="auto")
    x.add_argument("--json", action="store_true", help="print result.json")
    x.add_argument("--quiet", action="store_true", help="no progress bars")
    x.set_defaults(func=cmd_experiment)

    rp = sub.add_parser("report", help="gather experiment folders into one Markdown and HTML page")
    rp.add_argument("dirs", nargs="+", metavar="DIR", help="experiment folders (each with result.json)")
    rp.add_argument("--out", default="report.md", metavar="FILE.md", help="the Markdown page; the HTML goes beside it")
    rp.set_defaults(func=cmd_report)

    v = sub.add_parser("visualize", help="the paper's figures from a checkpoint").add_subparsers(
        dest="what", required=True, metavar="WHAT")
    vk = v.add_parser("kernels", help="the first conv layer's kernels as a grid (Figure 3)")
    vk.add_argument("run", metavar="RUN_OR_CKPT")
    vk.add_argument("--out", metavar="PNG", help="default: RUN/kernels.png")
    vk.add_argument("--device", default="cpu")
    vk.set_defaults(func=cmd_visualize)

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
    nb.set_defaults(func=cmd_neighbors)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(argv)
    if extra:
        # files after an option (`predict RUN --top-k 3 a.jpg b.jpg`) are still the command's files
        takes_files = isinstance(getattr(args, "images", None), list)
        unknown = [a for a in extra if a.startswith("-")] if takes_files else extra
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.images += extra
    args.argv = argv
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"alexnet: error: {e}", file=sys.stderr)
        return 2
    except CheckFailed as e:
        print(f"alexnet: error: {e} (a bug: please report it)", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("alexnet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
