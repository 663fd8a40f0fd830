"""What every paper experiment shares: training the arms (configurations) over seeds through
``alexnet.train``, measuring, averaging, judging against the paper, and writing ``result.json``,
``report.md`` and the plots.

An experiment is a function ``run(ctx) -> Outcome`` registered with ``@experiment``; it asks
``ctx.run(arm, seed, **config)`` for trained runs (cached in ``OUT/runs/ARM-sSEED``, so a rerun or
``--seeds 5`` after ``--seeds 3`` trains only what is missing) and returns rows of paper figure
against measurement and a verdict.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import re
import shutil
import statistics
import sys
from .._toml import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy
import torch
import torchvision

from ..checkpoint import load_checkpoint
from ..config import TrainConfig
from ..data.datasets import subset
from ..data.loader import BatchLoader
from ..engine.data import build_data, build_test
from ..engine.evaluation import evaluate_model
from ..models import create_model
from ..models.summary import count_params
from ..runtime import cpu_model, pick_device
from ..training import train
from ..version import __version__


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
    minutes: float  # default run time on the reference machine (measured 2026-11-29 where run, else estimated), for `experiment list`
    run: Callable[["Context"], "Outcome"] = field(repr=False)
    # the protocol's power calculation: the paper's effect (in the primary test's units), the per-seed
    # standard deviation of the paired difference from the pilot (the previous published run), and
    # where that pilot figure comes from
    pilot: tuple[float, float, str] | None = None


EXPERIMENTS: dict[str, Spec] = {}


def experiment(name: str, *, title: str, section: str, claim: str, data: str, seeds: int, epochs: int,
               train_images: int | None = None, minutes: float = 0.0, pilot: tuple[float, float, str] | None = None
               ) -> Callable[[Callable[["Context"], "Outcome"]], Any]:
    def register(fn: Callable[["Context"], "Outcome"]) -> Callable[["Context"], "Outcome"]:
        EXPERIMENTS[name] = Spec(name, title, section, claim, data, seeds, epochs, train_images, minutes, fn, pilot)
        return fn

    return register


@dataclass
class Run:
    """One trained arm/seed: its config, per-epoch metrics and extra measurements."""

    arm: str
    seed: int
    out: Path
    config: dict[str, Any]
    metrics: list[dict[str, float]]
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def final(self) -> dict[str, float]:
        return self.metrics[-1]

    @property
    def test_error(self) -> float:
        """The final weights' top-1 error on the test split (seen once, at the end, with a val_split;
        without one, the per-epoch evaluation is on the test split)."""
        test = float(self.final.get("test_top1_error", math.nan))
        return test if not math.isnan(test) else float(self.final["val_top1_error"])

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
    verdicts: list["Verdict"]  # one per claim; the first is the protocol's primary claim, the experiment's verdict
    plots: list[str]
    measured: dict[str, Any]  # every figure, by name: {"mean", "std", "values"} or a plain number
    notes: list[str] = field(default_factory=list)


class Context:
    """Settings of one experiment invocation and the means to train and measure runs."""

    def __init__(self, spec: Spec, data: str, out: Path, *, seeds: int | None = None, epochs: int | None = None,
                 train_images: int | None = None, val_images: int | None = None, device: str = "auto",
                 overrides: dict[str, Any] | None = None, progress: bool = True,
                 log: Callable[[str], None] | None = None) -> None:
        self.spec, self.data, self.out = spec, data, out
        self.seeds = list(range(seeds if seeds is not None else spec.seeds))
        self.epochs = epochs if epochs is not None else spec.epochs
        self.train_images = train_images if train_images is not None else spec.train_images
        self.val_images = val_images
        self.device, self.progress = device, progress
        self.overrides = dict(overrides or {})
        self.log = log or (lambda s: print(s, file=sys.stderr, flush=True))
        self.runs: list[Run] = []  # the runs the result reports
        self.all_runs: list[Run] = []  # and any others it trained (a learning-rate search), for the time
        self.arms: dict[str, dict[str, Any]] = {}  # arm -> {name, model, options, parameters}

    # -- training -----------------------------------------------------------------------------
    def config(self, arm: str, seed: int, base: dict[str, Any], **changes: Any) -> TrainConfig:
        values = merge_configs(base, changes)
        values.setdefault("epochs", self.epochs)
        values.update(data=self.data, out=str(self.out / "runs" / f"{slug(arm)}-s{seed}"), seed=seed, device=self.device,
                      max_train_images=values.get("max_train_images", self.train_images),
                      max_val_images=self.val_images)
        values = merge_configs(values, self.overrides)
        return TrainConfig.from_dict(values, source=f"experiment {self.spec.name}").validate()

    def run(self, arm: str, seed: int, base: dict[str, Any], **changes: Any) -> Run:
        """Train (or reuse, when ``run.json`` there was written by the same config) one arm and seed."""
        cfg = self.config(arm, seed, base, **changes)
        out = Path(cfg.out)
        record = out / "run.json"
        if record.is_file():
            saved = json.loads(record.read_text())
            if _without_out(saved.get("config", {})) == _without_out(cfg.to_dict()):  # the folder may have moved
                self.log(f"[{self.spec.name}] {arm} seed {seed}: reusing {out}")
                run = Run(arm, seed, out, cfg.to_dict(), saved["metrics"], saved["seconds"], saved.get("extra", {}))
                self._record(run)
                return run
        if (out / "last.pt").exists():
            if _same_config(out / "config.toml", cfg):  # interrupted: continue where it stopped
                cfg = dataclasses.replace(cfg, resume=True)
            else:  # a run of another config: start again
                shutil.rmtree(out)
        verb = "resuming" if cfg.resume else "training"
        self.log(f"[{self.spec.name}] {verb} {arm}, seed {seed} ({cfg.epochs} epochs)")
        result = train(cfg, progress=self.progress, log=self.log)
        run = Run(arm, seed, out, cfg.to_dict(), result.metrics, result.seconds)
        self.save_run(run)
        self._record(run)
        return run

    def _record(self, run: Run) -> None:
        self.runs.append(run)
        self.all_runs.append(run)
        if run.arm not in self.arms:  # the arm as trained: its network, options and parameter count
            ck = load_checkpoint(run.out / "last.pt")
            options = dict(ck.get("model_options", {}))
            model = create_model(ck["model_name"], num_classes=int(ck["num_classes"]), **options)
            self.arms[run.arm] = {"name": run.arm, "model": ck["model_name"], "options": options,
                                  "parameters": count_params(model)}

    def reported_arms(self) -> list[dict[str, Any]]:
        """The arms of the runs the result reports (a learning-rate search's are left out)."""
        names = list(dict.fromkeys(r.arm for r in self.runs))
        return [self.arms[a] for a in names]

    def save_run(self, run: Run) -> None:
        _write_json(run.out / "run.json", {"config": run.config, "metrics": run.metrics, "seconds": run.seconds,
                                           "extra": run.extra})

    def measure(self, run: Run, key: str, fn: Callable[[], float]) -> float:
        """An extra measurement of a run (train-set error, ten-crop error), kept in its run.json."""
        if key not in run.extra:
            run.extra[key] = float(fn())
            self.save_run(run)
        return run.extra[key]

    def evaluate(self, run: Run, *, split: str = "test", ten_crop: bool = False, max_images: int | None = None) -> float:
        """Top-1 error of the run's final weights (last.pt) on its test images or on the images it was
        trained on (``split="train"``: the same subset, seen through the evaluation transform)."""
        cfg = TrainConfig.from_dict(run.config)
        train_ds, val_ds, classes, transform = build_data(cfg)
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', not {split!r}")
        test_ds = build_test(cfg, classes, transform) if split == "test" else None
        ds = subset(train_ds if split == "train" else test_ds if test_ds is not None else val_ds, max_images, 12345)
        ck = load_checkpoint(run.out / "last.pt")
        device = pick_device(cfg.device)
        model = create_model(ck["model_name"], num_classes=int(ck["num_classes"]), **ck.get("model_options", {}))
        model.load_state_dict(ck["model"])
        model.to(device).eval()
        loader = BatchLoader(ds, 256, workers=cfg.workers)
        res = evaluate_model(model, loader, transform, classes, device=device, precision=cfg.precision,
                             channels_last=cfg.channels_last, progress=self.progress, ten_crop=ten_crop)
        return res.top1_error


def slug(name: str) -> str:
    """An arm's name as a folder name: "z=3, s=2" -> "z3-s2", "dropout 0.5" -> "dropout-0.5"."""
    out = re.sub(r"[^a-z0-9.+]+", "-", name.lower().replace("=", "")).strip("-")
    return out or "arm"


def _without_out(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != "out"}


def _same_config(path: Path, cfg: TrainConfig) -> bool:
    try:
        saved = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False
    mine = {k: v for k, v in cfg.to_dict().items() if v is not None and k not in ("resume", "out")}
    return {k: v for k, v in saved.items() if k not in ("resume", "out")} == mine


def stats(values: list[float]) -> dict[str, Any]:
    vals = [float(v) for v in values]
    finite = [v for v in vals if not math.isnan(v)]
    return {
        "mean": statistics.fmean(finite) if finite else math.nan,
        "std": statistics.stdev(finite) if len(finite) > 1 else math.nan,
        "n": len(finite),
        "values": vals,
    }


def spread(values: list[float], *, scale: float = 1.0, unit: str = "", digits: int = 1, sign: bool = False,
           empty: str = "n/a") -> str:
    """``mean ± std (n seeds)`` of the finite values, each multiplied by ``scale``."""
    s = stats(values)
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


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz's method)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def student_t_sf(t: float, df: int) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom (written out: SciPy is not a dependency)."""
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def paired_t_test(diffs: list[float], null: float = 0.0) -> dict[str, Any]:
    """One-sided t-test that the mean of ``diffs`` exceeds ``null`` (the paper's direction is positive):
    t = (mean - null) / (sd / sqrt(n)) with n - 1 degrees of freedom. For paired arms, ``diffs``
    are the per-seed differences. NaNs (runs that never got there) are left out."""
    vals = [float(v) for v in diffs if not math.isnan(float(v))]
    n = len(vals)
    # undefined figures are None (null in result.json, which stays standard JSON), not NaN
    out: dict[str, Any] = {"n": n, "df": max(n - 1, 0), "mean": statistics.fmean(vals) - null if vals else None,
                           "null": null, "t": None, "p": None, "alpha": 0.05,
                           "sided": "one (the paper's direction)"}
    if n < 2:
        return out
    sd = statistics.stdev(vals)
    m = out["mean"]
    if sd == 0:
        out["t"] = math.inf if m > 0 else (-math.inf if m < 0 else 0.0)
        out["p"] = 0.0 if m > 0 else (1.0 if m < 0 else 0.5)
        return out
    out["t"] = m / (sd / math.sqrt(n))
    out["p"] = student_t_sf(out["t"], n - 1)
    return out


def fmt_test(test: dict[str, Any]) -> str:
    """``t = 2.78, df = 2, p = 0.054`` (one-sided)."""
    if test["n"] < 2:
        return f"no test: {test['n']} seed{'s' if test['n'] != 1 else ''}"
    return f"t = {test['t']:.2f}, df = {test['df']}, p = {test['p']:.3g}"


# -- verdicts (docs/paper/protocol.md, "Verdicts") ------------------------------------------------
ALPHA = 0.05
SIZE_RANGE = (0.5, 2.0)  # an effect within this factor of the paper's is "the paper's size"
STATUSES = ("reproduced", "reproduced in direction, size differs", "reproduced in direction, size censored",
            "not significant", "contradicted", "inconclusive", "measured")


@dataclass
class Verdict:
    """One claim's verdict: its status (one of STATUSES), the figure it rests on (what the summary
    row shows), why, and the test behind it."""

    claim: str
    status: str
    figure: str
    reason: str
    test: dict[str, Any] = field(default_factory=dict)
    paper: str = ""  # the paper's side of the claim, as the summary row shows it

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _verdict(paper: str, *args: Any) -> Verdict:
    return Verdict(*args, paper=paper)


def sign_test(signs: list[int]) -> dict[str, Any]:
    """One-sided exact sign test that pairs favour the paper's direction (+1) over the other (-1);
    pairs whose order is unknown (0: both runs censored) are left out. Censoring-aware: a run that
    never reached its target still orders its pair when the other run did."""
    known = [s for s in signs if s]
    n, k = len(known), sum(1 for s in known if s > 0)
    p = sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n if n else 1.0
    return {"kind": "sign", "n": n, "df": None, "positive": k, "p": p, "t": None, "alpha": ALPHA,
            "sided": "one (the paper's direction)"}


def judge(effects: list[float], paper: float | None, claim: str, *, figure: str, claimed: str = "",
          scale: float = 100.0, unit: str = " pts", log: bool = False, censored: int = 0,
          signs: list[int] | None = None) -> Verdict:
    """The protocol's verdict on one claim from per-seed paired effects (positive = the paper's
    direction), by a one-sided paired t-test at 5% with n - 1 degrees of freedom.

    - reproduced: significant, and the mean effect within SIZE_RANGE times the paper's (or the paper
      gives no size);
    - reproduced in direction, size differs: significant, outside that range (the ratio is given);
    - not significant: p >= 0.05, whatever the sign; contradicted: significant the other way;
    - censored measurements (``censored`` runs never reached their target, so ``effects`` are bounds):
      never "reproduced"; the exact sign test on ``signs`` (the censoring-aware test) decides between
      "reproduced in direction, size censored" and "inconclusive".
    ``log``: effects are logs of ratios and ``paper`` is the paper's ratio (e.g. 6 for "six times")."""
    test = paired_t_test(effects)
    test.update(what=claim, scale=scale, unit=unit)
    target = None if paper is None else (math.log(paper) if log else paper)
    if censored:
        st = sign_test(signs or [])
        st.update(what=f"{claim} (sign test: {censored} censored run(s))")
        if st["n"] and st["p"] < ALPHA:
            return _verdict(claimed, claim, "reproduced in direction, size censored", figure,
                           f"{censored} run(s) never reached the target, so the size is only a bound; the sign test "
                           f"supports the direction ({st['positive']} of {st['n']} pairs, p = {st['p']:.3g})", st)
        return _verdict(claimed, claim, "inconclusive", figure,
                       f"{censored} run(s) never reached the target and the sign test does not support the claim "
                       f"({st['positive']} of {st['n']} ordered pairs, p = {st['p']:.3g})", st)
    if test["n"] < 2 or test["mean"] is None:
        return _verdict(claimed, claim, "inconclusive", figure, f"no test: {test['n']} seed(s)", test)
    stat = fmt_test(test)
    if test["p"] >= ALPHA:
        opposite = 1.0 - test["p"] if test["t"] is not None else 0.0
        if opposite < ALPHA and test["mean"] < 0:
            return _verdict(claimed, claim, "contradicted", figure, f"significant the other way ({stat}, one-sided p the other "
                                                          f"way {opposite:.3g})", test)
        return _verdict(claimed, claim, "not significant", figure, stat, test)
    if target is None:
        return _verdict(claimed, claim, "reproduced", figure, f"significant ({stat}); the paper gives no size", test)
    ratio = math.exp(test["mean"] - target) if log else test["mean"] / target
    test["ratio_to_paper"] = ratio
    lo, hi = SIZE_RANGE
    if lo <= ratio <= hi:
        return _verdict(claimed, claim, "reproduced", figure, f"significant ({stat}); {ratio:.2f}x the paper's effect", test)
    return _verdict(claimed, claim, "reproduced in direction, size differs", figure,
                   f"significant ({stat}); {ratio:.2f}x the paper's effect, outside {lo:g}x-{hi:g}x", test)


def judge_level(values: list[float], paper: float, claim: str, *, figure: str, claimed: str = "",
                tolerance: float = 0.25) -> Verdict:
    """A claimed level (an error rate), not a difference: reproduced when a one-sided one-sample
    t-test puts the mean below (1 + tolerance) x the paper's figure at 5%; contradicted when it puts
    it above; otherwise not significant."""
    bound = paper * (1 + tolerance)
    below = paired_t_test([bound - v for v in values])
    below.update(what=f"{claim}: below {bound * 100:.3g}% ({1 + tolerance:g}x the paper's)", scale=100.0, unit=" pts")
    if below["n"] < 2 or below["p"] is None:
        return _verdict(claimed, claim, "inconclusive", figure, f"no test: {below['n']} seed(s)", below)
    if below["p"] < ALPHA:
        return _verdict(claimed, claim, "reproduced", figure, f"below {bound * 100:.3g}% ({fmt_test(below)})", below)
    above = paired_t_test([v - bound for v in values])
    if above["p"] is not None and above["p"] < ALPHA:
        above.update(what=f"{claim}: above {bound * 100:.3g}%", scale=100.0, unit=" pts")
        return _verdict(claimed, claim, "contradicted", figure, f"above {bound * 100:.3g}% ({fmt_test(above)})", above)
    return _verdict(claimed, claim, "not significant", figure, f"not below {bound * 100:.3g}% at 5% ({fmt_test(below)})", below)


def measured(effects: list[float], claim: str, *, figure: str, claimed: str = "—", scale: float = 100.0,
             unit: str = " pts") -> Verdict:
    """An effect the paper makes no claim about (LeNet-5's parts): reported with its one-sided paired
    t-test (positive: an increase), status "measured", no verdict."""
    test = paired_t_test(effects)
    test.update(what=claim, scale=scale, unit=unit)
    return _verdict(claimed, claim, "measured", figure, fmt_test(test), test)


# -- power (docs/paper/protocol.md, "Seeds") -----------------------------------------------------
def t_quantile(q: float, df: int) -> float:
    """The t value with P(T > t) = 1 - q (bisection on student_t_sf)."""
    lo, hi = -50.0, 50.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if student_t_sf(mid, df) > 1 - q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def power(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the one-sided paired t-test with n seeds to detect a mean effect ``effect`` when the
    per-seed differences have standard deviation ``sd`` (the noncentral t approximated by a shifted
    central t: under 0.01 below the simulated exact power at n = 4-9, tests/test_experiments.py)."""
    if n < 2 or sd <= 0:
        return math.nan
    crit = t_quantile(1 - alpha, n - 1)
    return student_t_sf(crit - effect / sd * math.sqrt(n), n - 1)


def power_summary(spec: Spec, n: int) -> dict[str, Any] | None:
    """The protocol's power figures for ``spec`` run with n seeds (None without a pilot)."""
    if spec.pilot is None:
        return None
    effect, sd, source = spec.pilot
    return {"paper_effect": effect, "pilot_sd": sd, "pilot": source, "seeds": n, "power": power(effect, sd, n),
            "seeds_for_80_percent": seeds_for(effect, sd), "detectable_at_80_percent": detectable(sd, n)}


def seeds_for(effect: float, sd: float, target: float = 0.8, most: int = 200) -> int:
    """The fewest seeds (at least 3) whose power reaches ``target`` (``most`` + 1 if none up to it)."""
    for n in range(3, most + 1):
        if power(effect, sd, n) >= target:
            return n
    return most + 1


def detectable(sd: float, n: int, target: float = 0.8) -> float:
    """The smallest mean effect n seeds detect with power ``target`` (bisection on ``power``)."""
    lo, hi = 0.0, 100 * sd
    for _ in range(100):
        mid = (lo + hi) / 2
        if power(mid, sd, n) >= target:
            hi = mid
        else:
            lo = mid
    return hi


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


# -- machine and versions ----------------------------------------------------------------------
def machine() -> dict[str, Any]:
    info = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def versions() -> dict[str, str]:
    return {"alexnet": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": numpy.__version__}


def _write_json(path: Path, obj: Any) -> None:
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




PROTOCOL = "docs/paper/protocol.md"  # the protocol the verdicts follow, in the repository


def report_markdown(result: dict[str, Any], *, heading: str = "#", image_prefix: str = "") -> str:
    """One experiment's page: the claim, a table of paper against measurement, each claim's verdict
    with its test, the arms, plots."""
    r = result
    s = r["settings"]
    v = r["verdict"]
    lines = [
        f"{heading} {r['title']}",
        "",
        f"**Claim** ({r['section']}): {r['claim']}",
        "",
        "| quantity | paper | ours |",
        "| --- | --- | --- |",
        *[f"| {row['quantity']} | {row['paper']} | {row['ours']} |" for row in r["table"]],
        "",
        f"**Verdict: {v['status']}** ({v.get('figure', '')}) — {v['reason']}.",
        "",
    ]
    claims = v.get("claims") or []
    if claims:
        lines += ["| claim | figure | verdict | test | effect / paper's |", "| --- | --- | --- | --- | --- |"]
        for c in claims:
            t = c.get("test") or {}
            ratio = t.get("ratio_to_paper")
            lines.append(f"| {c['claim']} | {c['figure']} | **{c['status']}** | {fmt_any_test(t)} | "
                         f"{'—' if ratio is None else f'{ratio:.2f}x'} |")
        lines.append("")
    arms = r.get("arms") or []
    if arms:
        lines += ["| arm | model | options | parameters |", "| --- | --- | --- | --- |"]
        lines += [f"| {a['name']} | {a['model']} | {_options_text(a['options'])} | {a['parameters']:,} |" for a in arms]
        lines.append("")
    lines += [f"- {n}" for n in r.get("notes", [])]
    if r.get("notes"):
        lines.append("")
    lines += [f"![{Path(p).stem}]({image_prefix}{p})" for p in r["plots"]]
    m = r["machine"]
    proto = r.get("protocol") or {}
    pw = r.get("power")
    if pw:
        lines += ["", f"Power (protocol): with {pw['seeds']} seeds the one-sided paired t-test detects the paper's "
                      f"effect ({pw['paper_effect'] * 100:.2g} pts, pilot SD {pw['pilot_sd'] * 100:.2g} pts: "
                      f"{pw['pilot']}) with probability {pw['power']:.2f}; 80% needs {pw['seeds_for_80_percent']} "
                      f"seeds; these seeds detect {pw['detectable_at_80_percent'] * 100:.2g} pts with 80%."]
    lines += [
        "",
        f"Protocol: `{proto.get('path', PROTOCOL)}`, section `{r['experiment']}`"
        + (f" (commit {proto['commit'][:10]})" if proto.get("commit") else "") + ".  ",
        f"Command: `{r['command']}`  ",
        f"Seeds {len(s['seeds'])}, {s['epochs']} epochs per run, training images: "
        f"{s['train_images'] or 'all'}; {len(r['runs'])} runs, {r['train_seconds'] / 60:.1f} min of training "
        f"on {m['cpu']} ({m['torch_threads']} threads{', ' + m['gpu'] if m.get('gpu') else ''}); "
        f"torch {r['versions']['torch']}, alexnet {r['versions']['alexnet']}, finished {r['finished']}.",
        "",
    ]
    return "\n".join(lines)


def fmt_any_test(t: dict[str, Any]) -> str:
    """A verdict's test in one cell: the t-test's t, df, p, or the sign test's count and p."""
    if not t:
        return "—"
    if t.get("kind") == "sign":
        return f"sign test: {t['positive']} of {t['n']} pairs, p = {t['p']:.3g}"
    if t.get("n", 0) < 2 or t.get("t") is None:
        return f"no test ({t.get('n', 0)} seeds)"
    return f"t = {t['t']:.2f}, df = {t['df']}, p = {t['p']:.3g}"


def _options_text(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items() if k != "in_chans") or "—"
