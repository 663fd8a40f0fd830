"""What every experiment is made of: its ``Spec`` in the registry, the trained ``Run`` of one arm and
seed, the rows and verdicts it returns (``Outcome``), and the small helpers the claims share
(merging configs, formatting spreads, times to a target).

An experiment is a function ``run(ctx) -> Outcome`` registered with ``@experiment``; it asks
``ctx.run(arm, seed, base, **changes)`` (``context.Context``) for trained runs.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy
import torch
import torchvision

from ..runtime import cpu_model
from ..version import __version__
from .stats import describe
from .verdicts import Verdict

# A claim's function takes the ``context.Context`` it runs in (typed Any here: context imports this
# module, and the layers have no cycle, not even for type checking).
Claim = Callable[[Any], "Outcome"]


@dataclass
class Spec:
    name: str
    title: str
    section: str  # where the paper makes the claim
    claim: str  # the paper's words, short
    data: str  # the kind of data: "cifar10" or "mnist"
    seeds: int  # default number of seeds
    epochs: int  # default epochs per run
    train_images: int | None  # default training subset (None: all)
    minutes: float  # default run time on the reference machine (estimated from measured epochs), for `experiment list`
    run: Claim = field(repr=False)
    # the protocol's power calculation: the paper's effect (in the primary test's units), the per-seed
    # standard deviation of the paired difference from the pilot, and where that pilot figure comes from
    pilot: tuple[float, float, str] | None = None


EXPERIMENTS: dict[str, Spec] = {}


def experiment(
    name: str,
    *,
    title: str,
    section: str,
    claim: str,
    data: str,
    seeds: int,
    epochs: int,
    train_images: int | None = None,
    minutes: float = 0.0,
    pilot: tuple[float, float, str] | None = None,
) -> Callable[[Claim], Claim]:
    def register(fn: Claim) -> Claim:
        EXPERIMENTS[name] = Spec(
            name=name,
            title=title,
            section=section,
            claim=claim,
            data=data,
            seeds=seeds,
            epochs=epochs,
            train_images=train_images,
            minutes=minutes,
            run=fn,
            pilot=pilot,
        )
        return fn

    return register


@dataclass
class Run:
    """One trained arm/seed: its config, per-epoch metrics, extra measurements and provenance."""

    arm: str
    seed: int
    out: Path
    config: dict[str, Any]
    metrics: list[dict[str, float]]
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> dict[str, float]:
        return self.metrics[-1]

    @property
    def test_error(self) -> float:
        """The final weights' top-1 error on the test split (seen once, at the end, with a val_split;
        without one, the per-epoch evaluation is on the test split)."""
        test = float(self.final.get("test_top1_error", math.nan))
        return test if not math.isnan(test) else float(self.final["val_top1_error"])

    def curve(self, key: str) -> list[float]:
        return [float(m[key]) for m in self.metrics]

    def train_seconds(self) -> list[float]:
        """Cumulative training seconds at the end of each epoch (evaluation excluded)."""
        out, total = [], 0.0
        for r in self.metrics:
            total += r["train_seconds"]
            out.append(total)
        return out


@dataclass
class Row:
    """One line of the claim-against-measurement table."""

    quantity: str
    paper: str
    ours: str
    values: list[float] = field(default_factory=list)  # per seed, for result.json


@dataclass
class Outcome:
    rows: list[Row]
    verdicts: list[Verdict]  # one per claim; the first is the protocol's primary claim, the experiment's verdict
    plots: list[str]
    measured: dict[str, Any]  # every figure, by name: {"mean", "std", "values"} or a plain number
    notes: list[str] = field(default_factory=list)


def merge_configs(*configs: dict[str, Any]) -> dict[str, Any]:
    """Configs combined left to right, the ``model_options`` tables key by key (a later table adds
    to and overrides an earlier one's keys; it never replaces the table)."""
    out: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for c in configs:
        out.update({k: v for k, v in c.items() if k != "model_options"})
        options.update(c.get("model_options", {}))
    out["model_options"] = options
    return out


def slug(name: str) -> str:
    """An arm's name as a folder name: "z=3, s=2" -> "z3-s2", "dropout 0.5" -> "dropout-0.5"."""
    out = re.sub(r"[^a-z0-9.+]+", "-", name.lower().replace("=", "")).strip("-")
    return out or "arm"


# -- figures as text -------------------------------------------------------------------------------
stats = describe


def spread(
    values: list[float], *, scale: float = 1.0, unit: str = "", digits: int = 1, sign: bool = False, empty: str = "n/a"
) -> str:
    """``mean ± std (n seeds)`` of the finite values, each multiplied by ``scale``."""
    s = describe(values)
    if s["n"] == 0:
        return empty
    text = f"{scale * s['mean']:{'+' if sign else ''}.{digits}f}{unit}"
    if s["n"] > 1:
        text += f" ± {scale * s['std']:.{digits}f}"
    return text + f" ({s['n']} seed{'s' if s['n'] > 1 else ''})"


def pct(values: list[float], digits: int = 1) -> str:
    """``12.3% ± 0.4 (3 seeds)`` from error fractions."""
    return spread(values, scale=100, unit="%", digits=digits)


def points(values: list[float], digits: int = 2) -> str:
    """A difference of error fractions in percentage points, with its spread over seeds."""
    return spread(values, scale=100, unit=" pts", digits=digits, sign=True)


def num(values: list[float], unit: str = "", digits: int = 1) -> str:
    """``6.5 ± 0.2 (3 seeds)`` of plain numbers (NaNs, runs that never got there, left out)."""
    return spread(values, unit=unit, digits=digits, empty="not reached")


def diff(a: list[float], b: list[float]) -> list[float]:
    """Per-seed a - b."""
    return [x - y for x, y in zip(a, b)]


# -- times to a target ---------------------------------------------------------------------------
def epochs_to_reach(errors: list[float], target: float) -> float:
    """Epochs (linearly interpolated between epoch ends) until a per-epoch error first reaches
    ``target``; NaN if it never does."""
    prev_e, prev_v = 0.0, None
    for i, v in enumerate(errors, 1):
        if v <= target:
            if prev_v is None or prev_v == v:
                return float(i)
            return prev_e + (prev_v - target) / (prev_v - v) * (i - prev_e)
        prev_e, prev_v = float(i), v
    return math.nan


def seconds_to_reach(errors: list[float], seconds: list[float], target: float) -> float:
    e = epochs_to_reach(errors, target)
    if math.isnan(e):
        return math.nan
    i = math.ceil(e) - 1
    before = seconds[i - 1] if i > 0 else 0.0
    return before + (e - i) * (seconds[i] - before)


def censored_ratio(slow: list[float], fast: list[float]) -> tuple[list[float], int, list[int]]:
    """Per-seed log(slow / fast) of two times-to-target (NaN: never reached), the number of censored
    runs and each pair's sign for the sign test (+1: ``slow`` is the slower one, as claimed; 0: both
    censored, order unknown). Censored pairs are left out of the log ratios."""
    logs, signs, censored = [], [], 0
    for s, f in zip(slow, fast):
        censored += math.isnan(s) + math.isnan(f)
        if math.isnan(s) and math.isnan(f):
            signs.append(0)
        elif math.isnan(s):
            signs.append(1)
        elif math.isnan(f):
            signs.append(-1)
        else:
            signs.append(1 if s > f else -1 if s < f else 0)
        if not (math.isnan(s) or math.isnan(f)):
            logs.append(math.log(s / f))
    return logs, censored, signs


# -- machine and versions ----------------------------------------------------------------------
def machine() -> dict[str, Any]:
    info = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def versions() -> dict[str, str]:
    return {
        "alexnet": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
    }


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as JSON at ``path``, atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_jsonable) + "\n")
    os.replace(tmp, path)


def _jsonable(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    raise TypeError(f"not JSON: {type(o).__name__}")
