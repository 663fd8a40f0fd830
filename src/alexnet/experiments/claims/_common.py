"""What the claims share under the protocol's second version: the CIFAR-10 settings every experiment
starts from (the fast recipe's, without response normalisation), the pilot's check, and the
measurements several claims take of finished runs."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..context import Context
from ..library import Run, epochs_to_reach

# The fast recipe (cifar_18pct_cifar10) less its response normalisation: the common settings of the
# protocol's second version. SGD with Nesterov momentum 0.9, batch 128, lr 0.05 after one epoch of
# linear warm-up, then a linear decay to zero over the run; weight decay 5e-4 on the kernels;
# per-channel standardised input; 2-pixel shifts and flips; 10% of the training split held out by
# seed (the other 45,000 images train); PyTorch's initialisation; 20 epochs (each spec's default).
FAST: dict[str, Any] = dict(
    model="cifar_18pct",
    batch_size=128,
    lr=0.05,
    momentum=0.9,
    nesterov=True,
    weight_decay=5e-4,
    schedule="linear",
    warmup_epochs=1.0,
    random_crop=True,
    translate=2,
    flip=True,
    normalize="meanstd",
    val_split=0.1,
    precision="fp32",
    model_options={"init": "torch", "lrn": "none"},
)
NO_AUGMENTATION: dict[str, Any] = dict(random_crop=False, translate=0, flip=False)
CROPS: dict[str, Any] = dict(image_size=32, crop_size=24, translate=0, model_options={"input_size": 24})
RATES = (0.05, 0.02, 0.01, 0.005)  # the pilot's candidates, tried in this order: the fast recipe's first
FITS = 0.35  # the pilot's check: an arm "trains" when its last epoch's running training error is at most this


def fits(bound: float = FITS) -> Callable[[Run], str | None]:
    """The pilot's check that a run trained: its last epoch's running training error at most ``bound``."""

    def check(run: Run) -> str | None:
        err = float(run.final["train_top1_error"])
        return None if err <= bound else f"training error {err:.1%} after {len(run.metrics)} epochs (> {bound:.0%})"

    return check


def final_train_errors(runs: list[Run]) -> list[float]:
    return [float(r.final["train_top1_error"]) for r in runs]


def train_set_errors(ctx: Context, runs: list[Run], n: int = 10000) -> list[float]:
    """Error of each run's final weights on (up to n of) the images it was trained on, without
    augmentation or dropout: the training side of the generalisation gap."""

    def train_error(run: Run) -> float:
        return ctx.evaluate(run, split="train", max_images=n)

    return [ctx.measure(r, "train_eval_top1_error", train_error) for r in runs]


def at_training_error(run: Run, level: float) -> float:
    """The held-out error of ``run`` when its running training error first reached ``level``
    (linearly interpolated between epoch ends; NaN if it never did)."""
    e = epochs_to_reach(run.curve("train_top1_error"), level)
    if math.isnan(e):
        return math.nan
    val = run.curve("val_top1_error")
    k = math.ceil(e)  # the epoch (1-based) in which it got there
    if k == 1:
        return val[0]
    return val[k - 2] + (e - (k - 1)) * (val[k - 1] - val[k - 2])


def plateau_epoch(errors: list[float], tolerance: float) -> tuple[float, bool]:
    """The first epoch whose held-out error is within ``tolerance`` of the run's lowest, and whether
    that is censored: the lowest lies in the last three epochs, so the error may still be falling."""
    low = min(errors)
    first = next(i for i, v in enumerate(errors, 1) if v <= low + tolerance)
    return float(first), errors.index(low) >= len(errors) - 3
