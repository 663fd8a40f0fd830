"""The training loop: data, model, SGD with the paper's schedule, evaluation every epoch,
metrics, plots and atomic checkpoints.

Usage::

    cfg = TrainConfig.from_recipe("recipes/lenet5_mnist.toml", data="mnist:../shared/data", out="runs/lenet")
    result = train(cfg)
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import json
import math
import os
import platform
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import __version__, distributed
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, dump_toml
from .distributed import all_reduce_sum, any_true
from .data.datasets import InMemoryDataset, load_dataset, subset
from .data.loader import BatchLoader
from .data.transforms import EvalTransform, TrainAugment, channel_stats
from .errors import UserError
from .evaluate import EvalResult, autocast_context, evaluate_model, plot_confusion
from .models import create_model, model_info
from .models.summary import count_params

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)

METRIC_FIELDS = [
    "epoch", "lr", "train_loss", "train_top1_error", "val_loss", "val_top1_error", "val_top5_error",
    "val_images", "train_seconds", "epoch_seconds", "elapsed_seconds", "images_per_sec",
]


@dataclass
class TrainResult:
    out: Path
    metrics: list[dict[str, float]]
    best_top1_error: float
    best_epoch: int
    final: EvalResult | None
    seconds: float
    skipped: list[tuple[str, str]] = field(default_factory=list)


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: under torchrun each process takes the GPU of its local rank."""
    if name == "auto" or (name == "cuda" and local_rank):
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name}: not a device (auto, cpu, cuda, cuda:N, mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine")
    return dev


def tune_cpu_allocator() -> None:
    """Keep freed activation buffers in the process instead of returning them to the OS.

    glibc hands large blocks back with munmap on every free, so each training step page-faults its
    activations in again; raising the mmap and trim thresholds makes CPU training steps about 10%
    faster here (cifar_18pct, batch 128: 1100 vs 990 img/s measured on the 2-core dev machine).
    """
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: the glibc maximum
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def _sample_images(train_ds: Any, n: int = 1000) -> torch.Tensor:
    """The training images (in memory), or an evenly spaced sample of n of them (decoded on the fly)."""
    if isinstance(train_ds, InMemoryDataset):
        return train_ds.images
    step = max(1, len(train_ds) // n)
    return torch.stack([train_ds.load(i) for i in range(0, len(train_ds), step)])


def _normalisation(cfg: TrainConfig, train_ds: Any, channels: int, image_size: int
                   ) -> tuple[tuple[float, ...], tuple[float, ...], torch.Tensor | None]:
    """Mean and std (0-255 units, per channel) and the per-pixel mean image for ``cfg.normalize``,
    measured on the training set (or, for a packed dataset, read from what ``prepare`` stored)."""
    from .data.transforms import match_channels, mean_image

    ones = (1.0,) * channels
    if cfg.normalize == "none":
        return (0.0,) * channels, ones, None
    if cfg.normalize == "imagenet":
        if channels != 3:
            raise UserError("normalize: 'imagenet' needs 3-channel input")
        return IMAGENET_MEAN, IMAGENET_STD, None
    meta = getattr(train_ds, "meta", None)
    if cfg.normalize == "mean_image":
        if meta and meta.get("image_size") == image_size:
            from .data.packed import packed_stats

            m = torch.from_numpy(packed_stats(meta["root"])["mean_image"]).permute(2, 0, 1).contiguous()
        else:
            m = mean_image(_sample_images(train_ds), image_size)
        return (0.0,) * m.shape[0], ones, m
    if meta and "stats" in meta and channels == 3:
        mean, std = tuple(meta["stats"]["channel_mean"]), tuple(meta["stats"]["channel_std"])
    else:
        mean, std = channel_stats(match_channels(_sample_images(train_ds), channels))
    return (mean, std, None) if cfg.normalize == "meanstd" else (mean, ones, None)


def _rgb_eigen(train_ds: Any, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training set's RGB eigen-decomposition for the PCA colour noise: the one ``prepare``
    stored for a packed dataset, else measured on (a sample of) the training images."""
    from .data.transforms import rgb_pca

    if channels != 3:
        raise UserError("pca-lighting: needs 3-channel (RGB) input")
    meta = getattr(train_ds, "meta", None)
    if meta and "stats" in meta:
        return torch.tensor(meta["stats"]["eigval"]), torch.tensor(meta["stats"]["eigvec"])
    images = _sample_images(train_ds)
    if images.shape[1] != 3:
        raise UserError("pca-lighting: the training images are not RGB")
    return rgb_pca(images)


def build_data(cfg: TrainConfig) -> tuple[Any, Any, list[str], EvalTransform]:
    """The training and validation sets and the evaluation transform of a config."""
    info = model_info(cfg.model)
    channels = int(cfg.model_options.get("in_chans", info.in_chans))
    image_size = cfg.image_size or info.image_size
    crop_size = cfg.crop_size or (info.input_size - 2 * cfg.pad)
    if crop_size > image_size:
        raise UserError(f"crop-size {crop_size} is larger than image-size {image_size}")
    if not cfg.data:
        raise UserError("--data is required (mnist[:ROOT], cifar10[:ROOT] or an image-folder path)")
    limit = int(cfg.cache_limit_gb * (1 << 30))
    kw = dict(image_size=image_size, channels=channels, workers=cfg.workers, cache_limit_bytes=limit)
    train_ds = load_dataset(cfg.data, "train", **kw)
    val_ds = load_dataset(cfg.data, "val", classes=list(train_ds.classes), **kw)
    train_ds = subset(train_ds, cfg.max_train_images, cfg.seed)
    val_ds = subset(val_ds, cfg.max_val_images, cfg.seed + 1)
    mean, std, mimage = _normalisation(cfg, train_ds, channels, image_size)
    if mimage is not None and mimage.shape[0] != channels:
        raise UserError(f"normalize: the per-pixel mean has {mimage.shape[0]} channels, the model takes {channels}")
    t = EvalTransform(image_size, crop_size, cfg.pad, channels, tuple(mean), tuple(std), mimage)
    return train_ds, val_ds, list(train_ds.classes), t


class LRSchedule:
    """Learning rate per step: warm-up, then constant / step / cosine / linear, or the paper's
    plateau rule (divide by 1/gamma when the val error has not improved by ``threshold`` for
    ``patience`` epochs, at most ``max_reductions`` times)."""

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int) -> None:
        self.cfg, self.spe = cfg, steps_per_epoch
        self.total = cfg.epochs * steps_per_epoch
        self.best = math.inf
        self.bad_epochs = 0
        self.reductions = 0

    def __call__(self, step: int) -> float:
        c = self.cfg
        warm = c.warmup_epochs * self.spe
        if step < warm and c.schedule != "plateau":
            return c.lr * (0.1 + 0.9 * step / warm)
        if c.schedule == "plateau":
            return c.lr * c.gamma**self.reductions
        if c.schedule == "constant":
            return c.lr
        if c.schedule == "step":
            return c.lr * c.gamma ** (step // (c.step_size * self.spe))
        frac = (step - warm) / max(1.0, self.total - warm)
        if c.schedule == "cosine":
            return c.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
        return c.lr * max(0.0, 1.0 - frac)  # linear to zero

    def observe(self, val_error: float) -> bool:
        """Feed an epoch's val error (plateau only); True when the rate was just reduced."""
        if self.cfg.schedule != "plateau" or math.isnan(val_error):
            return False
        if val_error < self.best - self.cfg.plateau_threshold:
            self.best, self.bad_epochs = val_error, 0
            return False
        self.best = min(self.best, val_error)
        self.bad_epochs += 1
        if self.bad_epochs >= self.cfg.plateau_patience and self.reductions < self.cfg.max_reductions:
            self.reductions += 1
            self.bad_epochs = 0
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_epochs": self.bad_epochs, "reductions": self.reductions}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.best, self.bad_epochs, self.reductions = float(d["best"]), int(d["bad_epochs"]), int(d["reductions"])


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)


def write_metrics(path: Path, rows: list[dict[str, float]]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    os.replace(tmp, path)


def plot_curves(path: Path, rows: list[dict[str, float]], title: str) -> None:
    """Loss and top-1 error per epoch, train and validation, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ep = [r["epoch"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(ep, [r["train_loss"] for r in rows], "o-", label="train")
    a.plot(ep, [r["val_loss"] for r in rows], "s-", label="validation")
    a.set_xlabel("epoch"), a.set_ylabel("cross-entropy loss"), a.legend(), a.grid(alpha=0.3)
    b.plot(ep, [100 * r["train_top1_error"] for r in rows], "o-", label="train top-1")
    b.plot(ep, [100 * r["val_top1_error"] for r in rows], "s-", label="validation top-1")
    b.plot(ep, [100 * r["val_top5_error"] for r in rows], "^--", label="validation top-5")
    b.set_xlabel("epoch"), b.set_ylabel("error (%)"), b.legend(), b.grid(alpha=0.3)
    for ax in (a, b):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def environment() -> dict[str, str]:
    import subprocess

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "alexnet": __version__,
        "git_commit": commit or "unknown",
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "machine": platform.platform(),
    }


@dataclass
class EpochState:
    """Where an epoch stands: what a mid-epoch checkpoint must hold to continue it exactly."""

    batches_done: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0


def _train_epoch(model: nn.Module, loader: BatchLoader, augment: Callable[[torch.Tensor], torch.Tensor],
                 optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, schedule: LRSchedule,
                 step: int, cfg: TrainConfig, device: torch.device, desc: str, progress: bool,
                 state: EpochState, after_step: Callable[[int, EpochState], bool]) -> tuple[EpochState, int, bool]:
    """One pass over ``loader`` (from ``state.batches_done`` on). ``after_step(step, state)`` runs
    after every step and returns True to stop early. Returns (state summed over the processes,
    next global step, whether it stopped early)."""
    from tqdm import tqdm

    model.train()
    done_images = min(loader.num_images, state.batches_done * loader.batch_size)
    stopped = False
    acc, n_batches = cfg.accumulate, len(loader)
    with tqdm(total=loader.num_images, initial=done_images, desc=desc, unit="img",
              disable=not progress or None, leave=False, dynamic_ncols=True) as bar:
        for x, y in loader:
            # micro-batch k of an optimizer step's group (all groups full but maybe the epoch's last)
            k = state.batches_done % acc
            group = min(acc, n_batches - (state.batches_done - k))
            if k == 0:
                lr = schedule(step)
                for g in optimizer.param_groups:
                    g["lr"] = lr
                optimizer.zero_grad(set_to_none=True)
            x = augment(x.to(device, non_blocking=True))
            y = y.to(device, non_blocking=True)
            last_of_group = k == group - 1
            # DDP averages gradients once per optimizer step, on the group's last micro-batch
            sync = contextlib.nullcontext() if last_of_group or not hasattr(model, "no_sync") else model.no_sync()
            with sync:
                with autocast_context(device, cfg.precision):
                    logits = model(x)
                    loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
                if any_true(not bool(torch.isfinite(loss)), device):  # every process stops at the same step
                    raise UserError(
                        f"loss is not finite at {desc}, step {step}: training diverged (lower --lr?); "
                        f"the last checkpoint written before it, if any, is kept in {cfg.out}"
                    )
                scaler.scale(loss / group).backward()
            b = len(y)
            state.batches_done += 1
            state.loss_sum += loss.item() * b
            state.correct += int((logits.argmax(1) == y).sum())
            state.seen += b
            bar.update(b)
            if not last_of_group:
                continue
            scaler.step(optimizer)
            scaler.update()
            step += 1
            bar.set_postfix(loss=f"{state.loss_sum / state.seen:.3f}", acc=f"{state.correct / state.seen:.3f}",
                            lr=f"{lr:.2g}")
            if after_step(step, state):
                stopped = True
                break
    (totals,) = all_reduce_sum(torch.tensor([state.loss_sum, state.correct, state.seen], dtype=torch.float64,
                                            device=device))
    loss_sum, correct, seen = totals.tolist()
    return EpochState(state.batches_done, loss_sum, int(correct), int(seen)), step, stopped


def train(cfg: TrainConfig, *, progress: bool = True, log: Callable[[str], None] | None = None) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.data`` into the run folder ``cfg.out``; returns the metrics.

    Writes ``config.toml``, ``metrics.csv``, ``curves.png``, ``last.pt`` (every epoch, with the
    optimizer state) and ``best.pt`` (lowest val top-1 error), each checkpoint atomically.
    Ctrl-C keeps the last completed epoch's ``last.pt``; ``resume=True`` continues from it.
    """
    dinfo = distributed.setup()
    try:
        return _train(cfg, dinfo, progress=progress and dinfo.is_main, log=log)
    finally:
        distributed.cleanup(dinfo)


def _train(cfg: TrainConfig, dinfo: Any, *, progress: bool, log: Callable[[str], None] | None) -> TrainResult:
    from torch.nn.parallel import DistributedDataParallel

    main = dinfo.is_main
    say = (log or (lambda s: print(s, file=sys.stderr))) if main else (lambda s: None)
    cfg.validate()
    if cfg.batch_size % (dinfo.world_size * cfg.accumulate):
        raise UserError(f"--batch-size {cfg.batch_size} (the total over all processes) is not divisible by the "
                        f"{dinfo.world_size} processes x {cfg.accumulate} accumulation steps")
    if not cfg.out:
        raise UserError("--out is required: the run folder to write")
    out = Path(cfg.out)
    if (out / "last.pt").exists() and not cfg.resume:
        raise UserError(f"--out {out}: already holds a run (last.pt); pass --resume to continue it or choose another folder")
    if cfg.resume and not (out / "last.pt").exists():
        raise UserError(f"--resume: {out}/last.pt does not exist")
    tune_cpu_allocator()
    device = pick_device(cfg.device, dinfo.local_rank)
    t_start = time.perf_counter()

    train_ds, val_ds, classes, transform = build_data(cfg)
    # Seeded after the data is built: decoding a folder for the first time draws from the global
    # generator (DataLoader), reading it from the cache does not, and the weights must not care.
    seed_everything(cfg.seed)
    model_options = {"in_chans": transform.channels, **cfg.model_options}
    model = create_model(cfg.model, num_classes=len(classes), **model_options)
    model.to(device)
    channels_last = cfg.channels_last and device.type != "mps"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, model)
    net: nn.Module = model
    if dinfo.enabled:  # gradients averaged over the processes during backward
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)  # type: ignore[assignment]
    use_scaler = cfg.precision == "fp16" and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)

    shard = dict(rank=dinfo.rank, world_size=dinfo.world_size)
    train_loader = BatchLoader(train_ds, cfg.batch_size // (dinfo.world_size * cfg.accumulate), shuffle=True,
                               seed=cfg.seed, workers=cfg.workers, **shard)
    val_loader = BatchLoader(val_ds, max(cfg.batch_size, 256), workers=cfg.workers, pad_shards=False, **shard)
    if len(train_loader) == 0:
        raise UserError(f"--data {cfg.data}: no training images")
    steps_per_epoch = -(-len(train_loader) // cfg.accumulate)  # optimizer steps
    schedule = LRSchedule(cfg, steps_per_epoch)
    augment = TrainAugment(cfg.random_crop, cfg.translate, cfg.flip, cfg.pca_lighting)
    if cfg.pca_lighting > 0:
        augment.eigval, augment.eigvec = _rgb_eigen(train_ds, transform.channels)

    rows: list[dict[str, float]] = []
    best_err, best_epoch, start_epoch, elapsed_before = math.inf, 0, 0, 0.0
    partial: dict[str, Any] | None = None  # a mid-epoch checkpoint's position and random states
    if cfg.resume:
        ck = load_checkpoint(out / "last.pt")
        if ck["model_name"] != cfg.model or ck["num_classes"] != len(classes):
            raise UserError(f"--resume: {out}/last.pt is a {ck['model_name']} with {ck['num_classes']} classes, "
                            f"not a {cfg.model} with {len(classes)}")
        try:
            model.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise UserError(f"--resume: {out}/last.pt does not match this config ({str(e).splitlines()[0]})") from None
        st = ck["train_state"]
        schedule.load_state_dict(st["schedule"])
        rows, best_err, best_epoch = list(st["metrics"]), float(st["best_err"]), int(st["best_epoch"])
        start_epoch, elapsed_before = int(ck["epoch"]), float(st["elapsed"])
        transform = EvalTransform.from_dict(ck["eval_transform"])
        if scaler.is_enabled() and "scaler" in st:
            scaler.load_state_dict(st["scaler"])
        if cfg.target_train_error and rows and rows[-1]["train_top1_error"] <= cfg.target_train_error:
            start_epoch = cfg.epochs  # it had ended at its target: nothing left to train
        if st.get("batches_done", 0) > 0:
            partial = st
            say(f"resuming {out} in epoch {start_epoch + 1}, after step {st['batches_done']} of {len(train_loader)}")
        else:
            say(f"resuming {out} after epoch {start_epoch}")

    resolved = cfg.to_dict()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.toml").write_text(
            f"# resolved config of this run; rerun with: alexnet train --recipe {out / 'config.toml'} --out NEW_RUN\n"
            + dump_toml(resolved)
        )
    env = environment() | {"device": str(device), "processes": str(dinfo.world_size)}
    writer = None
    if main:
        from torch.utils.tensorboard import SummaryWriter

        (out / "environment.json").write_text(json.dumps(env, indent=1) + "\n")
        writer = SummaryWriter(str(out / "tensorboard"))
    n_params = count_params(model)
    say(
        f"{cfg.model}: {n_params:,} parameters | {len(train_ds):,} train / {len(val_ds):,} val images, "
        f"{len(classes)} classes | input {transform.channels}x{transform.input_size}x{transform.input_size} | "
        f"{device}, {cfg.precision}"
    )

    def checkpoint(epoch: int, metrics: dict[str, float], full: bool,
                   position: dict[str, Any] | None = None) -> dict[str, Any]:
        """``epoch`` completed epochs; ``position``: where a checkpoint written mid-epoch stands."""
        d: dict[str, Any] = {
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "model_name": cfg.model,
            "model_options": model_options,
            "num_classes": len(classes),
            "classes": classes,
            "class_names": list(getattr(train_ds, "meta", {}).get("class_names", classes)),
            "eval_transform": transform.to_dict(),
            "config": resolved,
            "environment": env,
            "epoch": epoch,
            "metrics": metrics,
        }
        if full:
            d["optimizer"] = optimizer.state_dict()
            d["train_state"] = {
                "schedule": schedule.state_dict(), "metrics": rows, "best_err": best_err,
                "best_epoch": best_epoch, "elapsed": elapsed_before + time.perf_counter() - t_start,
                "scaler": scaler.state_dict(), "batches_done": 0, **(position or {}),
            }
        return d

    # SIGINT (Ctrl-C) and SIGTERM (a scheduler's pre-emption) finish the current step, write a
    # checkpoint where the run stands and stop; a second Ctrl-C stops at once.
    stop_signal: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        if stop_signal:
            raise KeyboardInterrupt
        stop_signal.append(signum)

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, on_signal)

    global_step = int(partial["global_step"]) if partial else start_epoch * steps_per_epoch
    final: EvalResult | None = None
    try:
        for epoch in range(start_epoch, cfg.epochs):
            # Every random draw of an epoch depends on (seed, epoch) only, so a resumed run repeats it.
            # (Each process of a torchrun job draws its own dropout masks and crops.)
            torch.manual_seed(cfg.seed * 1_000_003 + epoch + 100_000_007 * dinfo.rank)
            gen = torch.Generator(device=device).manual_seed(cfg.seed * 7919 + epoch + 100_000_007 * dinfo.rank)
            state = EpochState()
            if partial is not None:  # continue mid-epoch exactly: position, running sums, random states
                rngs = partial["rng_per_rank"]
                if len(rngs) != dinfo.world_size:
                    raise UserError(f"--resume: {out}/last.pt was written mid-epoch by {len(rngs)} processes; "
                                    f"resume it with as many (this job has {dinfo.world_size})")
                accum = partial["accum"] if main else [0.0, 0, 0]  # the sums of all processes, counted once
                state = EpochState(int(partial["batches_done"]), float(accum[0]), int(accum[1]), int(accum[2]))
                mine = rngs[dinfo.rank]
                torch.set_rng_state(mine["rng"])
                gen.set_state(mine["gen"].to(gen.get_state().device))
                if device.type == "cuda" and "cuda_rng" in mine:
                    torch.cuda.set_rng_state(mine["cuda_rng"], device)
                partial = None
            train_loader.set_epoch(epoch, state.batches_done)
            seen_before = state.seen
            t0 = time.perf_counter()
            desc = f"epoch {epoch + 1}/{cfg.epochs}"

            def after_step(step: int, st: EpochState, epoch: int = epoch, gen: torch.Generator = gen) -> bool:
                # a stop on the epoch's last step lets the epoch end and write its usual checkpoint
                stop = any_true(bool(stop_signal), device) and st.batches_done < len(train_loader)
                if (stop or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0)) \
                        and st.batches_done < len(train_loader):
                    # Every process takes part (the decision is the same on all of them): the running
                    # sums are added up and each process's random states kept, indexed by rank.
                    (accum,) = all_reduce_sum(torch.tensor([st.loss_sum, st.correct, st.seen], dtype=torch.float64,
                                                           device=device))
                    rng = {"rng": torch.get_rng_state(), "gen": gen.get_state().cpu()}
                    if device.type == "cuda":
                        rng["cuda_rng"] = torch.cuda.get_rng_state(device)
                    rngs = distributed.gather_objects(rng)
                    if main:
                        position = {"batches_done": st.batches_done, "global_step": step,
                                    "accum": accum.tolist(), "rng_per_rank": rngs}
                        save_checkpoint(checkpoint(epoch, rows[-1] if rows else {}, True, position), out / "last.pt")
                return stop

            state, global_step, stopped = _train_epoch(
                net, train_loader, lambda x: augment(x, transform, gen, channels_last), optimizer, scaler,
                schedule, global_step, cfg, device, desc, progress, state, after_step)
            if stopped:
                raise KeyboardInterrupt
            loss_sum, correct, seen = state.loss_sum, state.correct, state.seen
            train_time = time.perf_counter() - t0
            reached = 0 < cfg.target_train_error and 1 - correct / max(seen, 1) <= cfg.target_train_error
            last = epoch + 1 == cfg.epochs or reached
            if (epoch + 1) % cfg.eval_every == 0 or last:
                final = evaluate_model(model, val_loader, transform, classes, device=device,
                                       precision=cfg.precision, channels_last=channels_last, progress=progress,
                                       ten_crop=cfg.ten_crop_eval and last)
            else:
                final = None
            row = {
                "epoch": epoch + 1,
                "lr": optimizer.param_groups[0]["lr"],
                "train_loss": loss_sum / max(seen, 1),
                "train_top1_error": 1 - correct / max(seen, 1),
                "val_loss": final.loss if final else math.nan,
                "val_top1_error": final.top1_error if final else math.nan,
                "val_top5_error": final.top5_error if final else math.nan,
                "val_images": final.n if final else 0,
                "train_seconds": train_time,
                "epoch_seconds": time.perf_counter() - t0,
                "elapsed_seconds": elapsed_before + time.perf_counter() - t_start,
                "images_per_sec": (seen - seen_before) / train_time,
            }
            rows.append(row)
            if writer is not None:
                for key in ("train_loss", "train_top1_error", "val_loss", "val_top1_error", "val_top5_error",
                            "lr", "images_per_sec"):
                    if not math.isnan(row[key]):
                        writer.add_scalar(key.replace("_", "/", 1) if key.startswith(("train", "val")) else key,
                                          row[key], epoch + 1)
                writer.flush()
            reduced = schedule.observe(row["val_top1_error"])
            improved = final is not None and final.top1_error < best_err
            if improved:
                best_err, best_epoch = final.top1_error, epoch + 1  # type: ignore[union-attr]
            say(
                f"epoch {epoch + 1:3d}/{cfg.epochs} | lr {row['lr']:.3g} | train loss {row['train_loss']:.4f} "
                f"err {row['train_top1_error']:.2%} | val loss {row['val_loss']:.4f} top-1 {row['val_top1_error']:.2%} "
                f"top-{final.k if final else 5} {row['val_top5_error']:.2%} | {row['images_per_sec']:.0f} img/s "
                f"| {row['elapsed_seconds']:.0f}s" + (" | lr / 10" if reduced else "")
            )
            if main:  # one process writes; the others hold the same weights
                save_checkpoint(checkpoint(epoch + 1, row, full=True), out / "last.pt")
                if improved:
                    save_checkpoint(checkpoint(epoch + 1, row, full=False), out / "best.pt")
                write_metrics(out / "metrics.csv", rows)
                plot_curves(out / "curves.png", rows, f"{cfg.model} on {cfg.data}")
            if any_true(bool(stop_signal), device):
                raise KeyboardInterrupt
            if reached:
                say(f"training error {row['train_top1_error']:.2%} reached the target "
                    f"{cfg.target_train_error:.2%}: the run ends at epoch {epoch + 1}")
                break
    except KeyboardInterrupt:
        say(f"\ninterrupted: {out}/last.pt holds the run as far as it got; continue with --resume")
        raise
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)
        if writer is not None:
            writer.close()
    if final is not None and main:
        plot_confusion(final, out / "confusion.png", f"{cfg.model}, epoch {rows[-1]['epoch']}: " +
                       f"top-1 error {final.top1_error:.2%}, top-{final.k} error {final.top5_error:.2%}")
    skipped = list(getattr(train_ds, "skipped", [])) + list(getattr(val_ds, "skipped", [])) + train_loader.skipped
    return TrainResult(out, rows, best_err, best_epoch, final, elapsed_before + time.perf_counter() - t_start, skipped)
