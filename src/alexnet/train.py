"""The training loop: data, model, SGD with the paper's schedule, evaluation every epoch,
metrics, plots and atomic checkpoints.

Usage::

    cfg = TrainConfig.from_recipe("recipes/lenet5_mnist.toml", data="mnist:../shared/data", out="runs/lenet")
    result = train(cfg)
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import math
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import distributed
from .config import TrainConfig
from .distributed import all_reduce_sum, any_true
from .data.datasets import InMemoryDataset, load_dataset, subset
from .data.loader import BatchLoader
from .data.pipeline import Prefetcher
from .data.transforms import EvalTransform, TrainAugment, channel_stats
from ._malloc import keep_freed_memory
from .errors import UserError, user_path
from .evaluate import EvalResult, autocast_context, evaluate_model, plot_confusion, resolve_precision, sum_dtype
from .run import RunFolder, environment
from .models import create_model, model_info
from .models.summary import count_params

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)



@dataclass
class TrainResult:
    out: Path
    metrics: list[dict[str, float]]
    best_top1_error: float
    best_epoch: int
    final: EvalResult | None
    seconds: float
    skipped: list[tuple[str, str]] = field(default_factory=list)
    final_ten_crop: EvalResult | None = None  # the last evaluation with the paper's ten patches (ten_crop_eval)


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


def build_data(cfg: TrainConfig, *, val: bool = True) -> tuple[Any, Any, list[str], EvalTransform]:
    """The training and validation sets and the evaluation transform of a config (``val=False``:
    no validation set, None in its place)."""
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
    val_ds = load_dataset(cfg.data, "val", classes=list(train_ds.classes), **kw) if val else None
    train_ds = subset(train_ds, cfg.max_train_images, cfg.seed)
    val_ds = subset(val_ds, cfg.max_val_images, cfg.seed + 1) if val else None
    mean, std, mimage = _normalisation(cfg, train_ds, channels, image_size)
    if mimage is not None and mimage.shape[0] != channels:
        raise UserError(f"normalize: the per-pixel mean has {mimage.shape[0]} channels, the model takes {channels}")
    t = EvalTransform(image_size, crop_size, cfg.pad, channels, tuple(mean), tuple(std), mimage)
    return train_ds, val_ds, list(train_ds.classes), t


class LRSchedule:
    """Learning rate per step: warm-up, then constant / step / multistep / cosine / linear, or the paper's
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
        if c.schedule == "multistep":
            return c.lr * c.gamma ** sum(step >= m * self.spe for m in c.milestones)
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


def decayed_parameter_names(model: nn.Module) -> list[str]:
    """The parameters weight decay applies to, chosen by role: the kernels of convolutional, linear
    and sparse (LeNet-5's C3) layers. Biases, LeNet's subsampling coefficients and anything else
    per-map are not decayed (a test lists the result for every model)."""
    from .models.lenet import SparseConv

    layers = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, SparseConv)
    return [f"{name}.weight" if name else "weight" for name, m in model.named_modules()
            if isinstance(m, layers) and getattr(m, "weight", None) is not None and m.weight.requires_grad]


def _optimizer_kwargs(cfg: TrainConfig, device: torch.device) -> dict[str, Any]:
    """``fused``: one kernel (CUDA) or one vectorised loop (CPU) for all parameters, 18x faster than
    the per-parameter loop for AlexNet's 61M parameters on the 2-core dev machine; ``foreach``:
    a few multi-tensor kernels."""
    impl = cfg.optimizer_impl
    if impl == "auto":
        impl = "fused" if device.type in ("cuda", "cpu") else "foreach"
    return {"fused": {"fused": True}, "foreach": {"foreach": True}, "for-loop": {"foreach": False}}[impl]


def parameter_groups(cfg: TrainConfig, model: nn.Module, loaded: set[str] | None = None) -> list[dict[str, Any]]:
    """Optimizer groups: decayed kernels (``weight_decay``, or ``weight_decay_layers[layer]``), and
    the rest undecayed; biases at ``bias_lr_factor`` times the rate, and the parameters ``loaded``
    from ``--init`` at ``lr_body`` times. ``lr_scale`` multiplies the schedule's rate in each group."""
    decayed = set(decayed_parameter_names(model))
    unknown = [layer for layer in cfg.weight_decay_layers
               if not any(n.rsplit(".", 1)[0].split(".")[-1] == layer or n.rsplit(".", 1)[0] == layer for n in decayed)]
    if unknown:
        raise UserError(f"weight-decay-layers: no layer named {', '.join(map(repr, unknown))} with decayed weights "
                        f"(the model's: {', '.join(sorted({n.rsplit('.', 1)[0] for n in decayed}))})")
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        layer = name.rsplit(".", 1)[0]
        if name in decayed:
            wd = cfg.weight_decay_layers.get(layer, cfg.weight_decay_layers.get(layer.split(".")[-1], cfg.weight_decay))
        else:
            wd = 0.0
        scale = cfg.bias_lr_factor if name.endswith("bias") else 1.0
        if loaded and name in loaded:
            scale *= cfg.lr_body
        groups.setdefault((float(wd), float(scale)), []).append(p)
    return [{"params": ps, "weight_decay": wd, "lr_scale": scale, "lr": cfg.lr * scale}
            for (wd, scale), ps in groups.items()]


def make_optimizer(cfg: TrainConfig, model: nn.Module, device: torch.device | None = None,
                   loaded: set[str] | None = None) -> torch.optim.Optimizer:
    device = device or next(model.parameters()).device
    groups = parameter_groups(cfg, model, loaded)
    kw = _optimizer_kwargs(cfg, device)
    try:
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=cfg.lr, **kw)
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0, **kw)
    except (RuntimeError, TypeError, ValueError) as e:
        if cfg.optimizer_impl != "auto":
            raise UserError(f"optimizer-impl {cfg.optimizer_impl}: not available here ({e})") from None
        return make_optimizer(dataclasses.replace(cfg, optimizer_impl="foreach"), model, device, loaded)


def base_lr(optimizer: torch.optim.Optimizer) -> float:
    """The schedule's learning rate (a group's rate over its ``lr_scale``)."""
    g = optimizer.param_groups[0]
    return g["lr"] / g.get("lr_scale", 1.0)


@dataclass
class EpochState:
    """Where an epoch stands on the host: what a mid-epoch checkpoint must hold to continue it
    (the running loss and accuracy live on the device, in ``TrainStep``)."""

    batches_done: int = 0
    seen: int = 0


class TrainStep:
    """Forward, loss, backward, and the optimizer step every ``accumulate`` micro-batches, without
    waiting for the device: the running loss and number correct are summed on the device, and so
    is the non-finite check (the first optimizer step whose loss was not finite). ``read()`` is the
    one place the host waits; the loop calls it every ``log_every`` steps and at the end of an epoch.

    With ``cuda_graphs`` the forward and backward of full-size batches replay a captured CUDA graph
    (``torch.cuda.make_graphed_callables``); a smaller last batch runs eagerly.
    """

    def __init__(self, net: nn.Module, model: nn.Module, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, cfg: TrainConfig, device: torch.device, precision: str) -> None:
        self.net, self.model, self.optimizer, self.scaler = net, model, optimizer, scaler
        self.cfg, self.device, self.precision = cfg, device, precision
        self.sums = torch.zeros(2, dtype=sum_dtype(device), device=device)  # loss x images, correct
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.step_no = torch.zeros((), dtype=torch.long, device=device)
        self.graphed: Any = None
        self.graph_shape: tuple[int, ...] | None = None

    def reset(self, global_step: int, loss_sum: float = 0.0, correct: float = 0.0) -> None:
        """Start an epoch (from a mid-epoch checkpoint's sums when resuming)."""
        self.sums.copy_(torch.tensor([loss_sum, correct], dtype=self.sums.dtype))
        self.first_bad.fill_(-1)
        self.step_no.fill_(global_step)

    def begin(self, lr: float) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        self.optimizer.zero_grad(set_to_none=True)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.cfg.cuda_graphs:
            return self.net(x)
        if self.graphed is None:
            self.graph_shape = tuple(x.shape)
            self.graphed = torch.cuda.make_graphed_callables(self.model, (x.detach().clone(),))
        return self.graphed(x) if tuple(x.shape) == self.graph_shape else self.model(x)

    def micro(self, x: torch.Tensor, y: torch.Tensor, group: int, last: bool) -> None:
        """One micro-batch of an optimizer step's group of ``group``; ``last``: the group's last one."""
        # DDP averages gradients once per optimizer step, on the group's last micro-batch
        sync = contextlib.nullcontext() if last or not hasattr(self.net, "no_sync") else self.net.no_sync()
        with sync:
            with autocast_context(self.device, self.precision, cache=not self.cfg.cuda_graphs):
                logits = self._forward(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=self.cfg.label_smoothing)
            self.scaler.scale(loss / group).backward()
        with torch.no_grad():
            lo = loss.detach()
            self.first_bad = torch.where((self.first_bad < 0) & ~torch.isfinite(lo), self.step_no, self.first_bad)
            self.sums[0] += lo.to(self.sums.dtype) * y.shape[0]
            self.sums[1] += (logits.detach().argmax(1) == y).sum()

    def update(self) -> None:
        self.scaler.step(self.optimizer)  # fused optimizers take the scaler's inf check without a sync
        self.scaler.update()
        self.step_no += 1

    def read(self) -> tuple[float, float, int]:
        """(loss sum, correct, first non-finite step or -1): waits for the device."""
        vals = torch.cat([self.sums.double(), self.first_bad.double().view(1)]).tolist()
        return vals[0], vals[1], int(vals[2])


def _train_epoch(step: TrainStep, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                 augment: Callable[[torch.Tensor], torch.Tensor], schedule: LRSchedule, global_step: int,
                 cfg: TrainConfig, n_batches: int, state: EpochState, bar: Any,
                 after_step: Callable[[int, EpochState], bool]) -> tuple[int, bool]:
    """One pass over ``batches`` (the rest of the epoch from ``state.batches_done`` on). Nothing here
    waits for the device; ``after_step(step, state)`` runs after each optimizer step (logging,
    checkpoints, signals) and returns True to stop. Returns (next global step, stopped early)."""
    acc = cfg.accumulate
    for x, y in batches:
        # micro-batch k of an optimizer step's group (all groups full but maybe the epoch's last)
        k = state.batches_done % acc
        group = min(acc, n_batches - (state.batches_done - k))
        if k == 0:
            step.begin(schedule(global_step))
        step.micro(augment(x), y, group, last=k == group - 1)
        state.batches_done += 1
        state.seen += y.shape[0]
        bar.update(y.shape[0])
        if k != group - 1:
            continue
        step.update()
        global_step += 1
        if after_step(global_step, state):
            return global_step, True
    return global_step, False


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


# What --resume may change: how the run is executed, not what it computes (and how long it goes on).
RESUMABLE_CHANGES = frozenset({
    "epochs", "workers", "device", "checkpoint_every", "log_every", "prefetch", "cache_limit_gb", "compile",
    "compile_mode", "cuda_graphs", "cudnn_benchmark", "channels_last", "optimizer_impl", "resume", "out",
})


def check_resume_config(cfg: TrainConfig, saved: dict[str, Any], where: str) -> None:
    """Refuse to resume with a config that differs from the run's in anything but RESUMABLE_CHANGES."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    before = TrainConfig.from_dict({k: v for k, v in saved.items() if k in known}, source=where).to_dict()
    now = cfg.to_dict()
    differ = sorted(k for k in known - RESUMABLE_CHANGES if before.get(k) != now.get(k))
    if differ:
        shown = "; ".join(f"{k}: {before.get(k)!r} in the run, {now.get(k)!r} now" for k in differ[:6])
        raise UserError(f"--resume: this config differs from the run's ({where}) in {', '.join(differ)} ({shown}); "
                        f"only {', '.join(sorted(RESUMABLE_CHANGES - {'resume', 'out'}))} may change")


def _check_out_outside_data(cfg: TrainConfig) -> None:
    """A run folder inside the dataset's own folder would become part of the dataset."""
    from .data.datasets import DataSpec

    spec = DataSpec.parse(cfg.data)
    root = user_path(spec.root, "--data")
    if not root.exists():
        return
    data_dir = root.resolve() if root.is_dir() else root.resolve().parent
    out = user_path(cfg.out, "--out").resolve()
    if out == data_dir or data_dir in out.parents:
        raise UserError(f"--out {cfg.out}: inside the dataset's folder {data_dir}; put the run somewhere else")


def _check_input_size(model: nn.Module, cfg: TrainConfig, transform: EvalTransform) -> None:
    """One forward pass of a zero image before any work: a crop the network cannot take fails here
    with the option that fits, not in the first step with a matrix-shape traceback."""
    s = transform.input_size
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, transform.channels, s, s, device=next(model.parameters()).device))
    except RuntimeError as e:
        info = model_info(cfg.model)
        hint = (f"pass --model-opt input_size={s} (the network is built for {info.input_size}x{info.input_size})"
                if "input_size" in info.options() else f"use --crop-size {info.input_size - 2 * cfg.pad}")
        raise UserError(f"--crop-size {transform.crop_size} (input {s}x{s}): {cfg.model} cannot take it; {hint}"
                        f" ({str(e).splitlines()[0][:120]})") from None
    finally:
        model.train()


def init_source(cfg: TrainConfig) -> dict[str, Any]:
    """The checkpoint (or export) ``--init`` names, checked against the model being trained."""
    from .checkpoint import load_checkpoint

    ck = load_checkpoint(cfg.init)
    if ck["model_name"] != cfg.model:
        raise UserError(f"--init {cfg.init}: holds a {ck['model_name']}, not a {cfg.model} (--model {ck['model_name']})")
    return ck


def load_init(model: nn.Module, ck: dict[str, Any], cfg: TrainConfig, say: Callable[[str], None]) -> set[str]:
    """Load the layers of ``ck`` whose shapes match (the output layer is replaced when the class count
    differs, and named), freeze up to ``cfg.freeze``; returns the names of the loaded parameters."""
    own = model.state_dict()
    source = ck["model"]
    loaded = {k: v for k, v in source.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    replaced = sorted(k for k in own if k in source and k not in loaded)
    missing = sorted(k for k in own if k not in source)
    model.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in loaded.items()}})
    say(f"--init {cfg.init}: loaded {len(loaded)} of {len(own)} tensors"
        + (f"; replaced (new shape, trained from scratch): {', '.join(replaced)}" if replaced else "")
        + (f"; not in the source: {', '.join(missing[:5])}" if missing else ""))
    frozen = freeze_layers(model, cfg, say)
    if any(n in replaced for n in frozen):
        raise UserError(f"--freeze {cfg.freeze}: would freeze a replaced (untrained) layer")
    return {n for n in dict(model.named_parameters()) if n in loaded}


def freeze_layers(model: nn.Module, cfg: TrainConfig, say: Callable[[str], None]) -> list[str]:
    """``requires_grad=False`` for the parameters up to and including layer ``cfg.freeze``."""
    if not cfg.freeze:
        return []
    names = [n for n, _ in model.named_parameters()]
    layer_of = [n.rsplit(".", 1)[0] for n in names]
    hits = [i for i, layer in enumerate(layer_of)
            if layer == cfg.freeze or layer.endswith("." + cfg.freeze) or layer.startswith(cfg.freeze + ".")]
    if not hits:
        layers = ", ".join(dict.fromkeys(layer.split(".")[-1] for layer in layer_of))
        raise UserError(f"--freeze {cfg.freeze}: no such layer or block (the model's: features, classifier, {layers})")
    frozen = names[: hits[-1] + 1]
    params = dict(model.named_parameters())
    for n in frozen:
        params[n].requires_grad_(False)
    say(f"--freeze {cfg.freeze}: {len(frozen)} parameter tensors frozen, up to {layer_of[hits[-1]]}")
    return frozen


def _check_fast_paths(cfg: TrainConfig, device: torch.device, dinfo: Any) -> None:
    if cfg.cuda_graphs:
        if device.type != "cuda":
            raise UserError(f"--cuda-graphs needs a CUDA device (this run is on {device})")
        if dinfo.enabled:
            raise UserError("--cuda-graphs: one process only (under torchrun use --compile --compile-mode reduce-overhead)")
        if cfg.compile:
            raise UserError("--cuda-graphs with --compile: use --compile-mode reduce-overhead, which captures graphs itself")
        if cfg.accumulate > 1:
            raise UserError("--cuda-graphs with --accumulate: not supported (the captured step is one whole batch)")


def _train(cfg: TrainConfig, dinfo: Any, *, progress: bool, log: Callable[[str], None] | None) -> TrainResult:
    from torch.nn.parallel import DistributedDataParallel
    from tqdm import tqdm

    main = dinfo.is_main
    say = (log or (lambda s: print(s, file=sys.stderr))) if main else (lambda s: None)
    cfg.validate()
    if cfg.batch_size % (dinfo.world_size * cfg.accumulate):
        raise UserError(f"--batch-size {cfg.batch_size} (the total over all processes) is not divisible by the "
                        f"{dinfo.world_size} processes x {cfg.accumulate} accumulation steps")
    if not cfg.out:
        raise UserError("--out is required: the run folder to write")
    folder = RunFolder(cfg.out, main=main)
    folder.check(cfg.resume)
    out = folder.out
    if cfg.data:
        _check_out_outside_data(cfg)
    if cfg.resume:
        from .config import load_recipe

        saved_toml = out / "config.toml"
        if saved_toml.is_file():
            check_resume_config(cfg, load_recipe(saved_toml), str(saved_toml))
        if not (out / "last.pt").is_file():  # stopped before its first checkpoint
            say(f"--resume: {out} holds no checkpoint yet (stopped while starting); starting the run from the "
                "beginning")
            folder.remove_stale_temporaries()
            cfg = dataclasses.replace(cfg, resume=False)

    tune_cpu_allocator()
    device = pick_device(cfg.device, dinfo.local_rank)
    if device.type == "cpu":
        keep_freed_memory()  # no page faults on large activations every step (see _malloc.py)
    _check_fast_paths(cfg, device, dinfo)
    precision = resolve_precision(cfg.precision, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
    t_start = time.perf_counter()

    train_ds, val_ds, classes, transform = build_data(cfg)
    source = init_source(cfg) if cfg.init and not cfg.resume else None
    if source is not None:  # the eval transform follows the source's normalisation
        st = EvalTransform.from_dict(source["eval_transform"])
        mimage = st.mean_image
        if mimage is not None and mimage.shape[-1] != transform.image_size:
            mimage = torch.nn.functional.interpolate(mimage[None], size=(transform.image_size,) * 2, mode="bilinear",
                                                     antialias=True, align_corners=False)[0]
        transform = dataclasses.replace(transform, mean=st.mean, std=st.std, mean_image=mimage)
    # Seeded after the data is built: decoding a folder for the first time draws from the global
    # generator (DataLoader), reading it from the cache does not, and the weights must not care.
    seed_everything(cfg.seed)
    # with --init, the source's architecture options (its lrn_scale, widths, ...) unless overridden
    inherited = {k: v for k, v in (source or {}).get("model_options", {}).items() if k != "in_chans"}
    model_options = {"in_chans": transform.channels, **inherited, **cfg.model_options}
    model = create_model(cfg.model, num_classes=len(classes), **model_options)
    model.to(device)
    channels_last = cfg.channels_last and device.type != "mps"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    _check_input_size(model, cfg, transform)
    resume_ck = folder.resume_checkpoint() if cfg.resume else None
    if source is not None:
        loaded: set[str] | None = load_init(model, source, cfg, say)
    elif resume_ck is not None and cfg.init:  # a fine-tuning run resumed: the same frozen layers and groups
        freeze_layers(model, cfg, say)
        loaded = set(resume_ck.get("init_loaded", []))
    else:
        loaded = None
    optimizer = make_optimizer(cfg, model, device, loaded)
    net: nn.Module = model
    if dinfo.enabled:  # gradients averaged over the processes during backward
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net, mode=None if cfg.compile_mode == "default" else cfg.compile_mode)  # type: ignore[assignment]
    use_scaler = precision == "fp16" and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    step = TrainStep(net, model, optimizer, scaler, cfg, device, precision)

    shard = dict(rank=dinfo.rank, world_size=dinfo.world_size)
    threads = max(1, min(cfg.workers, 4))
    train_loader = BatchLoader(train_ds, cfg.batch_size // (dinfo.world_size * cfg.accumulate), shuffle=True,
                               seed=cfg.seed, workers=cfg.workers, **shard)
    val_loader = BatchLoader(val_ds, max(cfg.batch_size, 256), workers=cfg.workers, pad_shards=False, **shard)
    if len(train_loader) == 0:
        raise UserError(f"--data {cfg.data}: no training images")
    batches = Prefetcher(train_loader, device, depth=cfg.prefetch, threads=threads)
    steps_per_epoch = -(-len(train_loader) // cfg.accumulate)  # optimizer steps
    schedule = LRSchedule(cfg, steps_per_epoch)
    augment = TrainAugment(cfg.random_crop, cfg.translate, cfg.flip, cfg.pca_lighting)
    if cfg.pca_lighting > 0:
        augment.eigval, augment.eigvec = _rgb_eigen(train_ds, transform.channels)

    rows: list[dict[str, float]] = []
    best_err, best_epoch, start_epoch, elapsed_before = math.inf, 0, 0, 0.0
    partial: dict[str, Any] | None = None  # a mid-epoch checkpoint's position and random states
    if resume_ck is not None:
        ck = resume_ck
        check_resume_config(cfg, ck.get("config", {}), f"{out}/last.pt")
        if ck["model_name"] != cfg.model or ck["num_classes"] != len(classes):
            raise UserError(f"--resume: {out}/last.pt is a {ck['model_name']} with {ck['num_classes']} classes, "
                            f"not a {cfg.model} with {len(classes)}")
        if list(ck.get("classes", classes)) != list(classes):
            changed = sorted(set(ck["classes"]) ^ set(classes))[:5]
            raise UserError(f"--resume: the data's classes are not the run's ({', '.join(changed) or 'another order'}); "
                            "resuming would mix two runs")
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
    env = environment() | {"device": str(device), "processes": str(dinfo.world_size), "precision": precision}
    folder.start(resolved, env)
    n_params = count_params(model)
    say(
        f"{cfg.model}: {n_params:,} parameters | {len(train_ds):,} train / {len(val_ds):,} val images, "
        f"{len(classes)} classes | input {transform.channels}x{transform.input_size}x{transform.input_size} | "
        f"{device}, {precision}"
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
        if loaded:
            d["init_loaded"] = sorted(loaded)  # the parameters --init loaded (their --lr-body group)
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

    def check_finite(desc: str) -> tuple[float, float]:
        """Read the running sums (a host sync); stop every process if a loss was not finite."""
        loss_sum, correct, bad = step.read()
        if any_true(bad >= 0, device):
            where = f"step {bad}" if bad >= 0 else "a step of another process"
            raise UserError(f"loss is not finite at {desc}, {where}: training diverged (lower --lr?); "
                            f"the last checkpoint written before it, if any, is kept in {cfg.out}")
        return loss_sum, correct

    global_step = int(partial["global_step"]) if partial else start_epoch * steps_per_epoch
    final: EvalResult | None = None
    final10: EvalResult | None = None
    try:
        for epoch in range(start_epoch, cfg.epochs):
            # Every random draw of an epoch depends on (seed, epoch) only, so a resumed run repeats it.
            # (Each process of a torchrun job draws its own dropout masks and crops.)
            torch.manual_seed(cfg.seed * 1_000_003 + epoch + 100_000_007 * dinfo.rank)
            gen = torch.Generator(device=device).manual_seed(cfg.seed * 7919 + epoch + 100_000_007 * dinfo.rank)
            state = EpochState()
            step.reset(global_step)
            if partial is not None:  # continue mid-epoch exactly: position, running sums, random states
                rngs = partial["rng_per_rank"]
                if len(rngs) != dinfo.world_size:
                    raise UserError(f"--resume: {out}/last.pt was written mid-epoch by {len(rngs)} processes; "
                                    f"resume it with as many (this job has {dinfo.world_size})")
                accum = partial["accum"] if main else [0.0, 0, 0]  # the sums of all processes, counted once
                state = EpochState(int(partial["batches_done"]), int(accum[2]))
                step.reset(global_step, float(accum[0]), float(accum[1]))
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
            bar = tqdm(total=train_loader.num_images, initial=min(train_loader.num_images, state.batches_done * train_loader.batch_size),
                       desc=desc, unit="img", disable=not progress or None, leave=False, dynamic_ncols=True)

            def after_step(gstep: int, st: EpochState, epoch: int = epoch, gen: torch.Generator = gen,
                           desc: str = desc, bar: Any = bar) -> bool:
                # Host-only work unless this is a log point: under torchrun the stop decision needs
                # the other processes, so it is taken at log points only.
                log_point = gstep % cfg.log_every == 0
                ckpt_point = bool(cfg.checkpoint_every) and gstep % cfg.checkpoint_every == 0
                stop = bool(stop_signal)
                if dinfo.enabled:
                    stop = (log_point or ckpt_point) and any_true(stop, device)
                stop = stop and st.batches_done < len(train_loader)  # a stop on the last step ends the epoch first
                if log_point or ckpt_point or stop:
                    loss_sum, correct = check_finite(desc)
                    if st.seen:
                        bar.set_postfix(loss=f"{loss_sum / st.seen:.3f}", acc=f"{correct / st.seen:.3f}",
                                        lr=f"{base_lr(optimizer):.2g}")
                if (stop or ckpt_point) and st.batches_done < len(train_loader):
                    # Every process takes part (the decision is the same on all of them): the running
                    # sums are added up and each process's random states kept, indexed by rank.
                    (acc,) = all_reduce_sum(torch.tensor([loss_sum, correct, st.seen], dtype=torch.float64,
                                                         device=device))
                    rng = {"rng": torch.get_rng_state(), "gen": gen.get_state().cpu()}
                    if device.type == "cuda":
                        rng["cuda_rng"] = torch.cuda.get_rng_state(device)
                    rngs = distributed.gather_objects(rng)
                    position = {"batches_done": st.batches_done, "global_step": gstep,
                                "accum": acc.tolist(), "rng_per_rank": rngs}
                    folder.save(checkpoint(epoch, rows[-1] if rows else {}, True, position), "last.pt")
                return stop

            with bar:
                global_step, stopped = _train_epoch(
                    step, batches, lambda x: augment(x, transform, gen, channels_last), schedule, global_step, cfg,
                    len(train_loader), state, bar, after_step)
            if stopped:
                raise KeyboardInterrupt
            loss_sum, correct = check_finite(desc)
            (totals,) = all_reduce_sum(torch.tensor([loss_sum, correct, state.seen], dtype=torch.float64, device=device))
            loss_sum, correct, seen = totals.tolist()
            train_time = time.perf_counter() - t0
            reached = 0 < cfg.target_train_error and 1 - correct / max(seen, 1) <= cfg.target_train_error
            last = epoch + 1 == cfg.epochs or reached
            evaluate = functools.partial(evaluate_model, model, val_loader, transform, classes, device=device,
                                         precision=precision, channels_last=channels_last, progress=progress,
                                         prefetch=cfg.prefetch)
            final = evaluate() if (epoch + 1) % cfg.eval_every == 0 or last else None
            # the paper's ten-patch test, in its own columns: selection and curves use the centre crop
            final10 = evaluate(ten_crop=True) if cfg.ten_crop_eval and last else None
            row = {
                "epoch": epoch + 1,
                "lr": base_lr(optimizer),
                "train_loss": loss_sum / max(seen, 1),
                "train_top1_error": 1 - correct / max(seen, 1),
                "val_loss": final.loss if final else math.nan,
                "val_top1_error": final.top1_error if final else math.nan,
                "val_top5_error": final.top5_error if final else math.nan,
                "val10_top1_error": final10.top1_error if final10 else math.nan,
                "val10_top5_error": final10.top5_error if final10 else math.nan,
                "val_images": final.n if final else 0,
                "train_seconds": train_time,
                "epoch_seconds": time.perf_counter() - t0,
                "elapsed_seconds": elapsed_before + time.perf_counter() - t_start,
                "images_per_sec": (seen - seen_before) / train_time,
            }
            rows.append(row)
            reduced = schedule.observe(row["val_top1_error"])
            improved = final is not None and final.top1_error < best_err
            if improved:
                best_err, best_epoch = final.top1_error, epoch + 1  # type: ignore[union-attr]
            ten = f" | ten-patch top-1 {row['val10_top1_error']:.2%}" if final10 else ""
            say(
                f"epoch {epoch + 1:3d}/{cfg.epochs} | lr {row['lr']:.3g} | train loss {row['train_loss']:.4f} "
                f"err {row['train_top1_error']:.2%} | val loss {row['val_loss']:.4f} top-1 {row['val_top1_error']:.2%} "
                f"top-{final.k if final else 5} {row['val_top5_error']:.2%}{ten} | {row['images_per_sec']:.0f} img/s "
                f"| {row['elapsed_seconds']:.0f}s" + (" | lr / 10" if reduced else "")
            )
            # one process writes; the others hold the same weights
            folder.save(checkpoint(epoch + 1, row, full=True), "last.pt")
            if improved:
                folder.save(checkpoint(epoch + 1, row, full=False), "best.pt")
            folder.end_epoch(rows, f"{cfg.model} on {cfg.data}")
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
        folder.close()
        batches.close()
    shown = final10 or final
    if shown is not None and main:
        how = "ten-patch" if final10 else "centre-crop"
        plot_confusion(shown, out / "confusion.png", f"{cfg.model}, epoch {rows[-1]['epoch']} ({how}): " +
                       f"top-1 error {shown.top1_error:.2%}, top-{shown.k} error {shown.top5_error:.2%}")
    skipped = list(getattr(train_ds, "skipped", [])) + list(getattr(val_ds, "skipped", [])) + train_loader.skipped
    return TrainResult(out, rows, best_err, best_epoch, final, elapsed_before + time.perf_counter() - t_start,
                       skipped, final10)
