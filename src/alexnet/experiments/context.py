"""The context an experiment runs in: its settings, the cache of trained runs (``OUT/runs/ARM-sSEED``),
the pilot that picks a learning rate every arm trains at, and evaluations of finished runs.

A finished run (its ``run.json``) is reused only if
- its config is the one asked for (the folder may have moved),
- it was trained by the same training code (``provenance.training_code_hash``: the package's
  training sources, hashed), and
- it started after the protocol commit that covers this experiment (its section or the common
  parts), when that is known (a git checkout).
Otherwise it is trained again. An interrupted run (``last.pt`` without ``run.json``) is resumed under
the same rules, read from the ``ARM-sSEED.started.json`` written beside it when it began.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .._toml import tomllib
from ..checkpoint import load_checkpoint
from ..config import TrainConfig
from ..errors import UserError
from ..models import create_model
from ..models.summary import count_params
from ..training import train
from .library import EXPERIMENTS, Run, Spec, merge_configs, slug, write_json
from .measure import probabilities as run_probabilities
from .measure import top1_error
from .provenance import code_state, now, parse_time, protocol_record, training_code_hash

PILOT_SEED = 1000  # the pilot's seed: never one of an experiment's seeds (0, 1, ...), and discarded


class Context:
    """Settings of one experiment invocation and the means to train and measure runs."""

    def __init__(
        self,
        spec: Spec,
        data: str,
        out: Path,
        *,
        seeds: int | None = None,
        epochs: int | None = None,
        train_images: int | None = None,
        val_images: int | None = None,
        device: str = "auto",
        overrides: dict[str, Any] | None = None,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
        pilot: bool = True,
    ) -> None:
        self.spec, self.data, self.out = spec, data, out
        self.pilot = pilot  # False: take the first candidate rate untried (quick trials; the protocol's runs pilot)
        self.seeds = list(range(seeds if seeds is not None else spec.seeds))
        self.epochs = epochs if epochs is not None else spec.epochs
        self.train_images = train_images if train_images is not None else spec.train_images
        self.val_images = val_images
        self.device, self.progress = device, progress
        self.overrides = dict(overrides or {})
        self.log = log or (lambda s: print(s, file=sys.stderr, flush=True))
        self.runs: list[Run] = []  # the runs the result reports
        self.all_runs: list[Run] = []  # and any others it trained (a pilot, a learning-rate search), for the time
        self.arms: dict[str, dict[str, Any]] = {}  # arm -> {name, model, options, parameters}
        self.pilots: list[dict[str, Any]] = []  # what each pilot tried and chose
        self.protocol = protocol_record(spec.name, set(EXPERIMENTS))
        self.training_code = training_code_hash()
        self.code = code_state()

    # -- training -----------------------------------------------------------------------------
    def config(self, arm: str, seed: int, base: dict[str, Any], **changes: Any) -> TrainConfig:
        values = merge_configs(base, changes)
        values.setdefault("epochs", self.epochs)
        values.update(
            data=self.data,
            out=str(self.out / "runs" / f"{slug(arm)}-s{seed}"),
            seed=seed,
            device=self.device,
            max_train_images=values.get("max_train_images", self.train_images),
            max_val_images=self.val_images,
        )
        values = merge_configs(values, self.overrides)
        return TrainConfig.from_dict(values, source=f"experiment {self.spec.name}").validate()

    def run(self, arm: str, seed: int, base: dict[str, Any], *, report: bool = True, **changes: Any) -> Run:
        """Train (or reuse, under the rules above) one arm and seed. ``report=False``: a pilot's or a
        search's run, counted in the time but not in the result's runs."""
        cfg = self.config(arm, seed, base, **changes)
        out = Path(cfg.out)
        record = out / "run.json"
        if record.is_file():
            saved = json.loads(record.read_text())
            why = self._stale(saved.get("provenance", {}))
            if _without_out(saved.get("config", {})) == _without_out(cfg.to_dict()) and why is None:
                self.log(f"[{self.spec.name}] {arm} seed {seed}: reusing {out}")
                run = Run(
                    arm=arm,
                    seed=seed,
                    out=out,
                    config=cfg.to_dict(),
                    metrics=saved["metrics"],
                    seconds=saved["seconds"],
                    extra=saved.get("extra", {}),
                    provenance=saved.get("provenance", {}),
                )
                self._record(run, report)
                return run
            if why is not None:
                self.log(f"[{self.spec.name}] {arm} seed {seed}: not reusing {out} ({why})")
            shutil.rmtree(out)
        marker = out.with_name(out.name + ".started.json")  # beside the folder: a run folder holds only the run
        started = _read_json(marker)
        if (out / "last.pt").exists() and _same_config(out / "config.toml", cfg) and self._stale(started) is None:
            cfg = dataclasses.replace(cfg, resume=True)  # interrupted: continue where it stopped
        elif out.exists():
            shutil.rmtree(out)  # a run of another config or code, or one that started before the protocol
        if not cfg.resume:
            started = {"started": now(), **self.code, "training_code": self.training_code}
            write_json(marker, started)
        self.log(
            f"[{self.spec.name}] {'resuming' if cfg.resume else 'training'} {arm}, seed {seed} ({cfg.epochs} epochs)"
        )
        cpu0 = _cpu_seconds()
        result = train(cfg, progress=self.progress, log=self.log)
        prov = {
            **started,
            "finished": now(),
            "cpu_seconds": _cpu_seconds() - cpu0,
            "resumed": bool(cfg.resume),
        }  # a resumed run's CPU time counts its last process only
        run = Run(arm, seed, out, cfg.to_dict(), result.metrics, result.seconds, provenance=prov)
        self.save_run(run)
        self._record(run, report)
        return run

    def _stale(self, prov: dict[str, Any]) -> str | None:
        """Why a run with this provenance may not be reused (None: it may)."""
        if prov.get("training_code") != self.training_code:
            return "trained by other training code" if prov.get("training_code") else "no provenance"
        committed = self.protocol.get("committed")
        if committed and parse_time(prov["started"]) <= datetime.datetime.fromisoformat(committed):
            return f"started before the protocol's commit {self.protocol['commit'][:10]}"
        return None

    def _record(self, run: Run, report: bool) -> None:
        self.all_runs.append(run)
        if not report:
            return
        self.runs.append(run)
        if run.arm not in self.arms:  # the arm as trained: its network, options and parameter count
            ck = load_checkpoint(run.out / "last.pt")
            options = dict(ck.get("model_options", {}))
            model = create_model(ck["model_name"], num_classes=int(ck["num_classes"]), **options)
            self.arms[run.arm] = {
                "name": run.arm,
                "model": ck["model_name"],
                "options": options,
                "parameters": count_params(model),
            }

    def paired(self, base: dict[str, Any], arms: dict[str, dict[str, Any]]) -> dict[str, list[Run]]:
        """Train every arm for every seed (seed-major, so an interrupted experiment has whole pairs)."""
        runs: dict[str, list[Run]] = {a: [] for a in arms}
        for seed in self.seeds:
            for arm, changes in arms.items():
                runs[arm].append(self.run(arm, seed, base, **changes))
        return runs

    def choose_rate(
        self,
        base: dict[str, Any],
        arms: dict[str, dict[str, Any]],
        candidates: Sequence[float],
        check: Callable[[Run], str | None],
    ) -> float:
        """The protocol's pilot: the first of ``candidates`` at which every arm, trained on the pilot
        seed for the experiment's full length, keeps a finite loss and passes ``check`` (which returns
        why a run failed, or None). The pilot's runs are discarded: counted in the time only."""
        if not self.pilot:
            self.pilots.append({"seed": None, "chosen_lr": candidates[0], "tried": [], "skipped": True})
            return candidates[0]
        tried = []
        for lr in candidates:
            failures = []
            for arm, changes in arms.items():
                try:
                    r = self.run(f"pilot-{arm}-lr{lr:g}", PILOT_SEED, base, report=False, **{**changes, "lr": lr})
                except UserError as e:
                    if "not finite" not in str(e):
                        raise
                    failures.append(f"{arm}: diverged")
                    continue
                why = check(r)
                if why:
                    failures.append(f"{arm}: {why}")
            tried.append({"lr": lr, "failures": failures})
            if not failures:
                self.pilots.append({"seed": PILOT_SEED, "chosen_lr": lr, "tried": tried})
                self.log(f"[{self.spec.name}] pilot: lr {lr:g} trains every arm")
                return lr
            self.log(f"[{self.spec.name}] pilot: lr {lr:g} fails ({'; '.join(failures)})")
        self.pilots.append({"seed": PILOT_SEED, "chosen_lr": None, "tried": tried})
        raise UserError(
            f"experiment {self.spec.name}: no learning rate of {', '.join(f'{c:g}' for c in candidates)} "
            "trains every arm on the pilot seed; the protocol needs an amendment"
        )

    def reported_arms(self) -> list[dict[str, Any]]:
        """The arms of the runs the result reports (a pilot's or a search's are left out)."""
        names = list(dict.fromkeys(r.arm for r in self.runs))
        return [self.arms[a] for a in names]

    def save_run(self, run: Run) -> None:
        write_json(
            run.out / "run.json",
            {
                "config": run.config,
                "metrics": run.metrics,
                "seconds": run.seconds,
                "extra": run.extra,
                "provenance": run.provenance,
            },
        )

    # -- measuring finished runs ----------------------------------------------------------------
    def measure(self, run: Run, key: str, fn: Callable[[Run], float]) -> float:
        """An extra measurement of a run (train-set error, ten-crop error), kept in its run.json."""
        if key not in run.extra:
            run.extra[key] = float(fn(run))
            self.save_run(run)
        return run.extra[key]

    def evaluate(
        self, run: Run, *, split: str = "test", ten_crop: bool = False, max_images: int | None = None
    ) -> float:
        """Top-1 error of the run's final weights (``measure.top1_error``)."""
        return top1_error(run, split=split, ten_crop=ten_crop, max_images=max_images, progress=self.progress)

    def probabilities(self, run: Run, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
        """The softmax outputs and labels of the run's final weights (``measure.probabilities``)."""
        return run_probabilities(run, split)


def _cpu_seconds() -> float:
    """This process's CPU time (every thread) and its finished children's, in seconds."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}


def _without_out(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != "out"}


def _same_config(path: Path, cfg: TrainConfig) -> bool:
    try:
        saved = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False
    mine = {k: v for k, v in cfg.to_dict().items() if v is not None and k not in ("resume", "out")}
    return {k: v for k, v in saved.items() if k not in ("resume", "out")} == mine
