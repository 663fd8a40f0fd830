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
import shlex
import shutil
import statistics
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .. import __version__
from ..checkpoint import load_checkpoint
from ..config import TrainConfig
from ..errors import UserError


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
    minutes: float  # measured default run time on the reference machine (README), for `experiment list`
    run: Callable[["Context"], "Outcome"] = field(repr=False)


EXPERIMENTS: dict[str, Spec] = {}


def experiment(name: str, *, title: str, section: str, claim: str, data: str, seeds: int, epochs: int,
               train_images: int | None = None, minutes: float = 0.0) -> Callable[[Callable[["Context"], "Outcome"]], Any]:
    def register(fn: Callable[["Context"], "Outcome"]) -> Callable[["Context"], "Outcome"]:
        EXPERIMENTS[name] = Spec(name, title, section, claim, data, seeds, epochs, train_images, minutes, fn)
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
        return float(self.final["val_top1_error"])

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
    verdict: str  # reproduced | partly | not reproduced
    reason: str
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

    # -- training -----------------------------------------------------------------------------
    def config(self, arm: str, seed: int, base: dict[str, Any], **changes: Any) -> TrainConfig:
        values = {**base, **changes}
        options = {**base.get("model_options", {}), **changes.get("model_options", {})}
        values["model_options"] = options
        values.setdefault("epochs", self.epochs)
        values.update(data=self.data, out=str(self.out / "runs" / f"{slug(arm)}-s{seed}"), seed=seed, device=self.device,
                      max_train_images=values.get("max_train_images", self.train_images),
                      max_val_images=self.val_images)
        values.update({k: v for k, v in self.overrides.items() if k != "model_options"})
        values["model_options"].update(self.overrides.get("model_options", {}))
        return TrainConfig.from_dict(values, source=f"experiment {self.spec.name}").validate()

    def run(self, arm: str, seed: int, base: dict[str, Any], **changes: Any) -> Run:
        """Train (or reuse, when ``run.json`` there was written by the same config) one arm and seed."""
        from ..train import train

        cfg = self.config(arm, seed, base, **changes)
        out = Path(cfg.out)
        record = out / "run.json"
        if record.is_file():
            saved = json.loads(record.read_text())
            if _without_out(saved.get("config", {})) == _without_out(cfg.to_dict()):  # the folder may have moved
                self.log(f"[{self.spec.name}] {arm} seed {seed}: reusing {out}")
                run = Run(arm, seed, out, cfg.to_dict(), saved["metrics"], saved["seconds"], saved.get("extra", {}))
                self.runs.append(run)
                self.all_runs.append(run)
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
        self.runs.append(run)
        self.all_runs.append(run)
        self.save_run(run)
        return run

    def save_run(self, run: Run) -> None:
        _write_json(run.out / "run.json", {"config": run.config, "metrics": run.metrics, "seconds": run.seconds,
                                           "extra": run.extra})

    def measure(self, run: Run, key: str, fn: Callable[[], float]) -> float:
        """An extra measurement of a run (train-set error, ten-crop error), kept in its run.json."""
        if key not in run.extra:
            run.extra[key] = float(fn())
            self.save_run(run)
        return run.extra[key]

    def evaluate(self, run: Run, *, split: str = "val", ten_crop: bool = False, max_images: int | None = None) -> float:
        """Top-1 error of the run's final weights (last.pt) on its own test images or on the images it
        was trained on (``split="train"``: the same subset, seen through the evaluation transform)."""
        from ..data.datasets import subset
        from ..data.loader import BatchLoader
        from ..evaluate import evaluate_model
        from ..models import create_model
        from ..train import build_data, pick_device

        cfg = TrainConfig.from_dict(run.config)
        train_ds, val_ds, classes, transform = build_data(cfg)
        ds = subset(train_ds if split == "train" else val_ds, max_images, 12345)
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


def judge_gain(gains: list[float], paper_gain: float | None, what: str) -> tuple[str, str]:
    """Verdict on a claimed improvement from its per-seed paired measurements (positive = as the
    paper says). Reproduced: the mean gain is beyond two standard errors and at least half the
    paper's (``None``: the paper gives no number, so beyond the noise is enough); partly: the right
    direction but smaller or within the noise; not: the wrong way."""
    s = stats(gains)
    m, n = s["mean"], s["n"]
    if n == 0 or math.isnan(m):
        return "not reproduced", "no measurement"
    se = s["std"] / math.sqrt(n) if n > 1 else math.nan
    if m == 0:
        return "not reproduced", f"{what} is zero over {n} seed(s): the arms give the same error"
    if m < 0:
        return "not reproduced", f"{what} goes the other way: {m * 100:+.2f} pts over {n} seed(s)"
    beyond_noise = n > 1 and m > 2 * se
    paper = "" if paper_gain is None else f"paper {paper_gain * 100:.1f}"
    if beyond_noise and (paper_gain is None or m >= 0.5 * paper_gain):
        return "reproduced", f"{what}: {m * 100:.2f} pts{' (' + paper + ')' if paper else ''}, beyond 2 standard errors over {n} seeds"
    if not beyond_noise:
        why = f"within 2 standard errors ({2 * se * 100:.2f} pts) over {n} seeds" if n > 1 else "a single seed"
        return "partly", f"{what} has the paper's sign ({m * 100:+.2f} pts{', ' + paper if paper else ''}) but is {why}"
    assert paper_gain is not None
    return "partly", f"{what} is real but smaller: {m * 100:.2f} pts against the paper's {paper_gain * 100:.1f}"


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
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def versions() -> dict[str, str]:
    import numpy
    import torchvision

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


# -- running and writing ------------------------------------------------------------------------
def run_experiment(name: str, data: str, out: str | os.PathLike[str], *, seeds: int | None = None,
                   epochs: int | None = None, train_images: int | None = None, val_images: int | None = None,
                   device: str = "auto", overrides: dict[str, Any] | None = None, progress: bool = True,
                   log: Callable[[str], None] | None = None, command: str | None = None) -> dict[str, Any]:
    """Run experiment ``name`` on dataset SPEC ``data`` into folder ``out``; returns result.json's dict."""
    from . import paper  # noqa: F401  (registers the experiments)

    if name not in EXPERIMENTS:
        raise UserError(f"experiment {name!r}: not one of {', '.join(EXPERIMENTS)} (see `alexnet experiment list`)")
    spec = EXPERIMENTS[name]
    for flag, v in (("--seeds", seeds), ("--epochs", epochs), ("--train-images", train_images), ("--val-images", val_images)):
        if v is not None and v < 1:
            raise UserError(f"{flag}: must be at least 1, not {v}")
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    ctx = Context(spec, data, outp, seeds=seeds, epochs=epochs, train_images=train_images, val_images=val_images,
                  device=device, overrides=overrides, progress=progress, log=log)
    t0 = time.perf_counter()
    outcome = spec.run(ctx)
    seconds = time.perf_counter() - t0
    result = {
        "experiment": spec.name,
        "title": spec.title,
        "section": spec.section,
        "claim": spec.claim,
        "command": command or f"alexnet experiment {spec.name} --data {shlex.quote(data)} --out {shlex.quote(str(out))}",
        "data": data,
        "settings": {"seeds": ctx.seeds, "epochs": ctx.epochs, "train_images": ctx.train_images,
                     "val_images": ctx.val_images, "device": device, "overrides": ctx.overrides},
        "table": [{"quantity": r.quantity, "paper": r.paper, "ours": r.ours, "values": r.values} for r in outcome.rows],
        "measured": outcome.measured,
        "verdict": {"status": outcome.verdict, "reason": outcome.reason},
        "notes": outcome.notes,
        "plots": outcome.plots,
        "runs": [{"arm": r.arm, "seed": r.seed, "folder": str(r.out.relative_to(outp)), "seconds": r.seconds,
                  "test_top1_error": r.test_error, "epochs": len(r.metrics), **r.extra} for r in ctx.runs],
        "seconds": seconds,
        "train_seconds": sum(r.seconds for r in ctx.all_runs),  # training and per-epoch evaluation, every run
        "machine": machine(),
        "versions": versions(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _write_json(outp / "result.json", result)
    (outp / "report.md").write_text(report_markdown(result))
    return result


def report_markdown(result: dict[str, Any], *, heading: str = "#", image_prefix: str = "") -> str:
    """One experiment's page: the claim, a table of paper against measurement, the verdict, plots."""
    r = result
    s = r["settings"]
    lines = [
        f"{heading} {r['title']}",
        "",
        f"**Claim** ({r['section']}): {r['claim']}",
        "",
        "| quantity | paper | ours |",
        "| --- | --- | --- |",
        *[f"| {row['quantity']} | {row['paper']} | {row['ours']} |" for row in r["table"]],
        "",
        f"**Verdict: {r['verdict']['status']}** — {r['verdict']['reason']}.",
        "",
    ]
    lines += [f"- {n}" for n in r.get("notes", [])]
    if r.get("notes"):
        lines.append("")
    lines += [f"![{Path(p).stem}]({image_prefix}{p})" for p in r["plots"]]
    m = r["machine"]
    lines += [
        "",
        f"Command: `{r['command']}`  ",
        f"Seeds {len(s['seeds'])}, {s['epochs']} epochs per run, training images: "
        f"{s['train_images'] or 'all'}; {len(r['runs'])} runs, {r['train_seconds'] / 60:.1f} min of training "
        f"on {m['cpu']} ({m['torch_threads']} threads{', ' + m['gpu'] if m.get('gpu') else ''}); "
        f"torch {r['versions']['torch']}, alexnet {r['versions']['alexnet']}, finished {r['finished']}.",
        "",
    ]
    return "\n".join(lines)
