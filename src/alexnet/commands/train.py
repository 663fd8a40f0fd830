"""``alexnet train``: train a network (a recipe file, then flags)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any

from ..config import TrainConfig, load_recipe, load_run_config
from ..errors import UserError
from ._common import list_literal, literal, parse_options


def add_parser(sub: Any) -> None:
    t = sub.add_parser(
        "train",
        help="train a network (a recipe file, then flags)",
        description="Train a network. Values come from the defaults, then --recipe, then the flags.",
    )
    t.add_argument(
        "--recipe",
        metavar="FILE",
        help="a TOML recipe (a shipped name such as lenet5_mnist, or a path); "
        "without it, the shipped recipe for --model and the kind of --data when there is one "
        "(--recipe none: the plain defaults)",
    )
    t.add_argument(
        "--model-opt",
        action="append",
        metavar="KEY=VALUE",
        help="a model option (repeatable), e.g. --model-opt activation=tanh --model-opt lrn=false",
    )
    _add_config_flags(t)
    t.set_defaults(func=run)


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, all defaulting to 'not given' so the recipe's value stays."""
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name == "model_options":
            continue
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        # ``X | None`` is X; a list or dict type stays what it is (its arguments are not the flag's type)
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        base = next((a for a in typing.get_args(hint) if a is not type(None)), hint) if union else hint
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc,operator]
        helptext = f"{f.metadata.get('help', '')} (default: {default})".strip().replace("%", "%%")
        if f.name == "resume":  # --resume (with --out RUN), or --resume RUN alone
            p.add_argument(
                flag,
                nargs="?",
                const=True,
                default=argparse.SUPPRESS,
                metavar="RUN",
                help="continue the run in RUN (or in --out) from its config.toml and last.pt; other flags "
                "may change only epochs, workers, device and how often it checkpoints and logs",
            )
        elif base is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=helptext)
        elif typing.get_origin(base) is list:
            p.add_argument(
                flag,
                type=list_literal,
                default=argparse.SUPPRESS,
                metavar=f.name.upper(),
                help=helptext + " (e.g. 120,130 or [120, 130])",
            )
        elif typing.get_origin(base) is dict:
            p.add_argument(
                flag,
                type=literal,
                default=argparse.SUPPRESS,
                metavar=f.name.upper(),
                help=helptext + " (TOML syntax, e.g. {fc10 = 1.0})",
            )
        else:
            p.add_argument(flag, type=base, default=argparse.SUPPRESS, metavar=f.name.upper(), help=helptext)


# The shipped recipe for a model and a kind of data, used when `train` gets no --recipe.
DEFAULT_RECIPES = {
    ("lenet5", "mnist"): "lenet5_mnist",
    ("cifar_18pct", "cifar10"): "cifar_18pct_cifar10",
    ("cifar_80sec", "cifar10"): "cifar_80sec_cifar10",
    ("alexnet", "folder"): "alexnet_imagenet",
    ("alexnet_tv", "folder"): "alexnet_tv_imagenet",
}


def default_recipe(model: str, data: str) -> str | None:
    from ..data.datasets import DataSpec  # torch: imported when the command runs, not for --help

    if not data:
        return None
    return DEFAULT_RECIPES.get((model, DataSpec.parse(data).kind))


def run(args: argparse.Namespace) -> int:
    from ..training import train

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
        cfg = cfg.update(load_run_config(run / "config.toml"), source=str(run / "config.toml"))
        flags["out"] = resume
    elif args.recipe and args.recipe.lower() != "none":
        cfg = cfg.update(load_recipe(args.recipe), source=args.recipe)
    elif not args.recipe:
        model = flags.get("model", cfg.model)
        shipped = default_recipe(model, flags.get("data", ""))
        if shipped:
            print(
                f"using the shipped recipe {shipped} for {model} on this data (--recipe none for the plain defaults)",
                file=sys.stderr,
            )
            cfg = cfg.update(load_recipe(shipped), source=shipped)
    model_given = "model" in flags or cfg.model != TrainConfig().model
    cfg = cfg.update(flags, source="flags")
    cfg.resume = bool(resume)
    if cfg.init and not model_given:  # fine-tuning: the model is the source's
        from ..checkpoint import load_checkpoint

        cfg.model = load_checkpoint(cfg.init)["model_name"]
    if args.model_opt:
        cfg.model_options.update(parse_options(args.model_opt))
    result = train(cfg)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return 0
    f = result.final
    print()
    print(
        f"done in {result.seconds / 60:.1f} min: best val top-1 error {result.best_top1_error:.2%} "
        f"(epoch {result.best_epoch})"
        + (f"; last epoch top-1 {f.top1_error:.2%}, top-{f.k} {f.top5_error:.2%} on {f.n:,} images" if f else "")
    )
    if result.test is not None:
        t = result.test
        print(
            f"test split (seen once, by the final weights): top-1 {t.top1_error:.2%}, top-{t.k} {t.top5_error:.2%} "
            f"on {t.n:,} images"
        )
    if result.skipped:
        print(f"{len(result.skipped)} unusable image files were skipped (listed above)")
    out = result.out
    print(f"results in {out}/: metrics.csv, curves.png, confusion.png, config.toml, best.pt, last.pt")
    print("next:")
    print(f"  alexnet evaluate {out} --data {cfg.data}")
    print(f"  alexnet predict {out} IMAGE_OR_FOLDER --top-k 5")
    return 0
