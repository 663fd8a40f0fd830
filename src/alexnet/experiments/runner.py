"""Running an experiment by name: the registered experiments (``claims/`` registers them on import),
the context they run in, and ``result.json`` / ``report.md`` written from what they return.

Usage::

    from alexnet.experiments import run_experiment
    result = run_experiment("lrn", "cifar10:../shared/data", "runs/exp/lrn")   # result.json's dict
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import UserError
from .claims import __all__ as CLAIMS  # noqa: F401  (importing the claims registers their experiments)
from .context import Context
from .library import EXPERIMENTS, machine, versions, write_json
from .report import report_markdown
from .stats import detectable, power, seeds_for


def power_summary(spec: Any, n: int) -> dict[str, Any] | None:
    """The protocol's power figures for ``spec`` run with n seeds (None without a pilot figure)."""
    if spec.pilot is None:
        return None
    effect, sd, source = spec.pilot
    return {
        "paper_effect": effect,
        "pilot_sd": sd,
        "pilot": source,
        "seeds": n,
        "power": power(effect, sd, n),
        "seeds_for_80_percent": seeds_for(effect, sd),
        "detectable_at_80_percent": detectable(sd, n),
    }


def provenance_summary(ctx: Context) -> dict[str, Any]:
    """result.json's provenance: the code that wrote it, and when and by what code its runs trained."""
    every = [r.provenance for r in ctx.all_runs]
    started = sorted(p["started"] for p in every if p.get("started"))
    finished = sorted(p["finished"] for p in every if p.get("finished"))
    return {
        **ctx.code,
        "training_code": ctx.training_code,
        "cpu_hours": sum(p.get("cpu_seconds", 0.0) for p in every) / 3600,
        "other_runs": len(ctx.all_runs) - len(ctx.runs),
        "first_started": started[0] if started else None,
        "last_finished": finished[-1] if finished else None,
        "run_commits": sorted({p["commit"] for p in every if p.get("commit")}),
    }


def run_experiment(
    name: str,
    data: str,
    out: str | os.PathLike[str],
    *,
    seeds: int | None = None,
    epochs: int | None = None,
    train_images: int | None = None,
    val_images: int | None = None,
    device: str = "auto",
    overrides: dict[str, Any] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    command: str | None = None,
    pilot: bool = True,
) -> dict[str, Any]:
    """Run experiment ``name`` on dataset SPEC ``data`` into folder ``out``; returns result.json's dict."""
    if name not in EXPERIMENTS:
        raise UserError(f"experiment {name!r}: not one of {', '.join(EXPERIMENTS)} (see `alexnet experiment list`)")
    spec = EXPERIMENTS[name]
    for flag, v in (
        ("--seeds", seeds),
        ("--epochs", epochs),
        ("--train-images", train_images),
        ("--val-images", val_images),
    ):
        if v is not None and v < 1:
            raise UserError(f"{flag}: must be at least 1, not {v}")
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    ctx = Context(
        spec,
        data,
        outp,
        seeds=seeds,
        epochs=epochs,
        train_images=train_images,
        val_images=val_images,
        device=device,
        overrides=overrides,
        progress=progress,
        log=log,
        pilot=pilot,
    )
    t0 = time.perf_counter()
    outcome = spec.run(ctx)
    seconds = time.perf_counter() - t0
    primary = outcome.verdicts[0]  # the protocol's primary claim
    result = {
        "experiment": spec.name,
        "title": spec.title,
        "section": spec.section,
        "claim": spec.claim,
        "command": command
        or f"alexnet experiment {spec.name} --data {shlex.quote(data)} --out {shlex.quote(str(out))}",
        "data": data,
        "settings": {
            "seeds": ctx.seeds,
            "epochs": ctx.epochs,
            "train_images": ctx.train_images,
            "val_images": ctx.val_images,
            "device": device,
            "overrides": ctx.overrides,
            "pilot": pilot,
        },
        "table": [{"quantity": r.quantity, "paper": r.paper, "ours": r.ours, "values": r.values} for r in outcome.rows],
        "measured": outcome.measured,
        "verdict": {
            "status": primary.status,
            "figure": primary.figure,
            "reason": primary.reason,
            "tests": [v.test for v in outcome.verdicts],
            "claims": [v.to_dict() for v in outcome.verdicts],
        },
        "arms": ctx.reported_arms(),
        "power": power_summary(spec, len(ctx.seeds)),
        "pilots": ctx.pilots,
        "protocol": ctx.protocol,
        "provenance": provenance_summary(ctx),
        "notes": outcome.notes,
        "plots": outcome.plots,
        "runs": [
            {
                "arm": r.arm,
                "seed": r.seed,
                "folder": str(r.out.relative_to(outp)),
                "seconds": r.seconds,
                "test_top1_error": r.test_error,
                "epochs": len(r.metrics),
                **r.extra,
                "provenance": r.provenance,
            }
            for r in ctx.runs
        ],
        "seconds": seconds,
        "train_seconds": sum(r.seconds for r in ctx.all_runs),  # training and per-epoch evaluation, every run
        "machine": machine(),
        "versions": versions(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json(outp / "result.json", result)
    (outp / "report.md").write_text(report_markdown(result))
    return result
