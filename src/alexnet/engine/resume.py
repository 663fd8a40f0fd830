"""Resuming a run, in one place: what ``--resume`` may change, the check before any work, what a
checkpoint keeps of the run's progress (``TrainState``), and the exact position inside an epoch
(the step, the running sums, every process's random states) that a mid-epoch checkpoint keeps.

A resumed run repeats what the uninterrupted run would have done bit for bit on the CPU (tests
compare final weights); on a GPU that needs ``--deterministic`` kernels as well.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import TrainConfig, load_run_config
from ..data.transforms import EvalTransform
from ..distributed import DistInfo, all_reduce_sum, gather_objects
from ..errors import UserError
from .ema import WeightEMA
from .runfolder import RunFolder
from .schedule import LRSchedule
from .step import EpochState, TrainStep

# What --resume may change: how the run is executed, not what it computes (and how long it goes on).
RESUMABLE_CHANGES = frozenset(
    {
        "epochs",
        "workers",
        "device",
        "checkpoint_every",
        "log_every",
        "prefetch",
        "cache_limit_gb",
        "compile",
        "compile_mode",
        "cuda_graphs",
        "cudnn_benchmark",
        "channels_last",
        "optimizer_impl",
        "resume",
        "out",
        "deterministic",
        "tf32",
        "decode",  # where JPEG shards are decoded: the same images (on the CPU the same pixels)
    }
)


def check_resume_config(cfg: TrainConfig, saved: dict[str, Any], where: str) -> None:
    """Refuse to resume with a config that differs from the run's in anything but RESUMABLE_CHANGES."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    before = TrainConfig.from_dict({k: v for k, v in saved.items() if k in known}, source=where).to_dict()
    now = cfg.to_dict()
    differ = sorted(k for k in known - RESUMABLE_CHANGES if before.get(k) != now.get(k))
    if differ:
        shown = "; ".join(f"{k}: {before.get(k)!r} in the run, {now.get(k)!r} now" for k in differ[:6])
        raise UserError(
            f"--resume: this config differs from the run's ({where}) in {', '.join(differ)} ({shown}); "
            f"only {', '.join(sorted(RESUMABLE_CHANGES - {'resume', 'out'}))} may change"
        )


def preflight(cfg: TrainConfig, folder: RunFolder, say: Callable[[str], None]) -> TrainConfig:
    """Before any work: the config may change only what RESUMABLE_CHANGES allows; a run stopped before
    its first checkpoint starts again from the beginning (returned with ``resume`` off)."""
    saved_toml = folder.out / "config.toml"
    if saved_toml.is_file():
        check_resume_config(cfg, load_run_config(saved_toml), str(saved_toml))
    if not (folder.out / "last.pt").is_file():
        say(
            f"--resume: {folder.out} holds no checkpoint yet (stopped while starting); starting the run from the "
            "beginning"
        )
        folder.remove_stale_temporaries()
        return dataclasses.replace(cfg, resume=False)
    return cfg


@dataclass
class TrainState:
    """The run's progress: what ``last.pt`` keeps besides the weights and the optimizer."""

    rows: list[dict[str, float]] = field(default_factory=list)  # metrics.csv's rows so far
    best_err: float = math.inf
    best_epoch: int = 0
    start_epoch: int = 0  # completed epochs
    elapsed_before: float = 0.0  # seconds of training before this process
    global_step: int = 0  # optimizer steps so far
    partial: dict[str, Any] | None = None  # a mid-epoch checkpoint's position and random states, until used

    def to_checkpoint(
        self,
        schedule: LRSchedule,
        scaler: torch.amp.GradScaler,
        elapsed: float,
        position: dict[str, Any] | None = None,
        ema: WeightEMA | None = None,
    ) -> dict[str, Any]:
        """``train_state`` of a full checkpoint (``position``: where a mid-epoch one stands; ``ema``: the
        run's average, whose weights the checkpoint holds as ``model_ema``)."""
        return {
            **({"ema_updates": ema.updates} if ema is not None else {}),
            "schedule": schedule.state_dict(),
            "metrics": self.rows,
            "best_err": self.best_err,
            "best_epoch": self.best_epoch,
            "elapsed": elapsed,
            "scaler": scaler.state_dict(),
            "batches_done": 0,
            **(position or {}),
        }


def restore(
    ck: dict[str, Any],
    *,
    cfg: TrainConfig,
    classes: list[str],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: LRSchedule,
    scaler: torch.amp.GradScaler,
    steps_per_epoch: int,
    batches_per_epoch: int,
    out: Path,
    say: Callable[[str], None],
    ema: WeightEMA | None = None,
) -> tuple[TrainState, EvalTransform]:
    """Load ``out/last.pt`` (read as ``ck``) into the model, optimizer, schedule and scaler after checking
    that it is this run's; returns the progress and the run's evaluation transform."""
    where = f"{out}/last.pt"
    check_resume_config(cfg, ck.get("config", {}), where)
    if ck["model_name"] != cfg.model or ck["num_classes"] != len(classes):
        raise UserError(
            f"--resume: {where} is a {ck['model_name']} with {ck['num_classes']} classes, "
            f"not a {cfg.model} with {len(classes)}"
        )
    if list(ck.get("classes", classes)) != list(classes):
        changed = sorted(set(ck["classes"]) ^ set(classes))[:5]
        raise UserError(
            f"--resume: the data's classes are not the run's ({', '.join(changed) or 'another order'}); "
            "resuming would mix two runs"
        )
    try:
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        if ema is not None:
            ema.load(ck["model_ema"], int(ck["train_state"]["ema_updates"]))
    except (RuntimeError, ValueError, KeyError) as e:
        raise UserError(f"--resume: {where} does not match this config ({str(e).splitlines()[0]})") from None
    st = ck["train_state"]
    schedule.load_state_dict(st["schedule"])
    state = TrainState(
        list(st["metrics"]), float(st["best_err"]), int(st["best_epoch"]), int(ck["epoch"]), float(st["elapsed"])
    )
    if scaler.is_enabled() and "scaler" in st:
        scaler.load_state_dict(st["scaler"])
    if cfg.target_train_error and state.rows and state.rows[-1]["train_top1_error"] <= cfg.target_train_error:
        state.start_epoch = cfg.epochs  # it had ended at its target: nothing left to train
    if st.get("batches_done", 0) > 0:
        state.partial = st
        say(f"resuming {out} in epoch {state.start_epoch + 1}, after step {st['batches_done']} of {batches_per_epoch}")
    else:
        say(f"resuming {out} after epoch {state.start_epoch}")
    state.global_step = int(st["global_step"]) if state.partial else state.start_epoch * steps_per_epoch
    return state, EvalTransform.from_dict(ck["eval_transform"])


@dataclass
class EpochGenerators:
    """An epoch's generators on the training device: the crops' and flips' (``crops``) and the
    distortions' and colour noise's (``noise``)."""

    crops: torch.Generator
    noise: torch.Generator


def capture_position(
    st: EpochState, global_step: int, sums: tuple[float, float], gens: EpochGenerators, device: torch.device
) -> dict[str, Any]:
    """Where an epoch stands, for a mid-epoch checkpoint. Every process takes part (the decision to
    checkpoint is the same on all of them): the running sums are added up and each process's random
    states kept, indexed by rank; and the epoch's training time so far (the main process's), so that
    a resumed epoch's ``train_seconds`` counts both of its parts."""
    (acc,) = all_reduce_sum(torch.tensor([sums[0], sums[1], st.seen], dtype=torch.float64, device=device))
    rng = {"rng": torch.get_rng_state(), "gen": gens.crops.get_state().cpu(), "noise_gen": gens.noise.get_state().cpu()}
    if device.type == "cuda":
        rng["cuda_rng"] = torch.cuda.get_rng_state(device)
    return {
        "batches_done": st.batches_done,
        "global_step": global_step,
        "accum": acc.tolist(),
        "epoch_train_seconds": st.seconds(),
        "rng_per_rank": gather_objects(rng),
    }


def restore_generator(gen: torch.Generator, saved: torch.Tensor, fallback_seed: int) -> bool:
    """Set ``gen`` to a saved state; True when that was exact. A state saved by a generator of another
    device type (a CUDA generator's is 16 bytes, a CPU one's 5,056) cannot be set: ``gen`` is then
    seeded with ``fallback_seed`` instead, and False returned."""
    if saved.numel() == gen.get_state().numel():
        try:
            gen.set_state(saved.to(gen.get_state().device))
            return True
        except RuntimeError:
            pass
    gen.manual_seed(fallback_seed)
    return False


def restore_position(
    partial: dict[str, Any],
    step: TrainStep,
    gens: EpochGenerators,
    global_step: int,
    dinfo: DistInfo,
    device: torch.device,
    *,
    where: str,
    say: Callable[[str], None],
) -> EpochState:
    """Continue an epoch exactly where a mid-epoch checkpoint left it: position, running sums, random
    states. Written on another kind of device, the epoch goes on from a fresh seed (said in the log)."""
    rngs = partial["rng_per_rank"]
    if len(rngs) != dinfo.world_size:
        raise UserError(
            f"--resume: {where} was written mid-epoch by {len(rngs)} processes; "
            f"resume it with as many (this job has {dinfo.world_size})"
        )
    accum = partial["accum"] if dinfo.is_main else [0.0, 0, 0]  # the sums of all processes, counted once
    step.reset(global_step, float(accum[0]), float(accum[1]))
    mine = rngs[dinfo.rank]
    torch.set_rng_state(mine["rng"])
    exact = restore_generator(gens.crops, mine["gen"], fallback_seed=1_000_003 * global_step + 7919 * dinfo.rank + 17)
    # checkpoints written before the noise had its own generator drew it from the crops' one
    if "noise_gen" in mine:
        exact &= restore_generator(gens.noise, mine["noise_gen"], fallback_seed=1_000_033 * global_step + dinfo.rank)
    if device.type == "cuda":
        if "cuda_rng" in mine:
            torch.cuda.set_rng_state(mine["cuda_rng"], device)
        else:
            exact = False
    if not exact:
        say(
            f"--resume: {where} was written mid-epoch on another kind of device; the rest of this epoch draws "
            "its crops, flips and dropout from a new seed (the run goes on, but is no longer bit for bit the "
            "uninterrupted one)"
        )
    # absent from checkpoints written before it was kept: the epoch's first part then counts 0 s.
    return EpochState(int(partial["batches_done"]), int(accum[2]), float(partial.get("epoch_train_seconds", 0.0)))
