"""Running an experiment by name: the registered experiments (``paper.py`` registers them on import),
the context they run in, and ``result.json`` / ``report.md`` written from what they return.

Usage::

    from alexnet.experiments import run_experiment
    result = run_experiment("lrn", "cifar10:../shared/data", "runs/exp/lrn")   # result.json's dict
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from ..errors import UserError
from .base import PROTOCOL, Context, _write_json, machine, power_summary, report_markdown, versions
from .paper import EXPERIMENTS  # the registry, filled as paper.py registers its experiments


# -- running and writing ------------------------------------------------------------------------
def protocol_version() -> dict[str, Any]:
    """Where the protocol is and, in a git checkout, the commit that last changed it (a result must
    finish after it: tests/test_experiments.py checks the published ones)."""
    out: dict[str, Any] = {"path": PROTOCOL, "commit": None, "committed": None}
    root = Path(__file__).resolve().parents[3]
    if (root / PROTOCOL).is_file():
        try:
            done = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%H %cI", "--", PROTOCOL],
                                  capture_output=True, text=True, timeout=10)
            if done.returncode == 0 and done.stdout.strip():
                out["commit"], out["committed"] = done.stdout.split()
        except (OSError, subprocess.SubprocessError):
            pass
    return out



def run_experiment(name: str, data: str, out: str | os.PathLike[str], *, seeds: int | None = None,
                   epochs: int | None = None, train_images: int | None = None, val_images: int | None = None,
                   device: str = "auto", overrides: dict[str, Any] | None = None, progress: bool = True,
                   log: Callable[[str], None] | None = None, command: str | None = None) -> dict[str, Any]:
    """Run experiment ``name`` on dataset SPEC ``data`` into folder ``out``; returns result.json's dict."""
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
    primary = outcome.verdicts[0]  # the protocol's primary claim
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
        "verdict": {"status": primary.status, "figure": primary.figure, "reason": primary.reason,
                    "tests": [v.test for v in outcome.verdicts], "claims": [v.to_dict() for v in outcome.verdicts]},
        "arms": ctx.reported_arms(),
        "power": power_summary(spec, len(ctx.seeds)),
        "protocol": protocol_version(),
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
