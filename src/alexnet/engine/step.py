"""One optimizer step (forward, loss, backward, update) without waiting for the device, and where an
epoch stands on the host (``EpochState``). The epoch's pass over its batches is ``training.train_epoch``."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from ..runtime import autocast_context, preserved_rng, sum_dtype


@dataclass
class EpochState:
    """Where an epoch stands on the host: what a mid-epoch checkpoint must hold to continue it
    (the running loss and accuracy live on the device, in ``TrainStep``)."""

    batches_done: int = 0
    seen: int = 0
    seconds_before: float = 0.0  # training time of the epoch's part before a mid-epoch checkpoint, when resumed
    started: float = field(default_factory=time.perf_counter)  # when this process's part began (perf_counter)

    def seconds(self) -> float:
        """The epoch's training time so far (both parts of a resumed epoch)."""
        return self.seconds_before + time.perf_counter() - self.started


def uses_accelerated(shape: tuple[int, ...], full_shape: tuple[int, ...] | None) -> bool:
    """Whether a batch of ``shape`` runs the accelerated forward (a captured CUDA graph, a compiled
    network), which is made for the full batch only; anything else (an epoch's short last batch)
    runs eagerly: a graph replayed with another shape fails, a compiled network recompiles."""
    return full_shape is not None and tuple(shape) == tuple(full_shape)


def cross_entropy(
    logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0, deterministic: bool = False
) -> torch.Tensor:
    """The mean cross-entropy against labels, or against class probabilities (a float ``y`` of
    (N, classes): MixUp's and CutMix's targets; smoothed as torch smooths them). ``deterministic``:
    written with ``gather`` instead of ``nll_loss``, whose CUDA kernel torch lists as non-deterministic
    (the same value, another reduction order)."""
    if y.is_floating_point():
        t = y * (1 - label_smoothing) + label_smoothing / y.shape[1] if label_smoothing else y
        return -(t * torch.log_softmax(logits, 1)).sum(1).mean()
    if not deterministic:
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    logp = torch.log_softmax(logits, 1)
    nll = -logp.gather(1, y[:, None]).squeeze(1)
    if label_smoothing:
        nll = (1 - label_smoothing) * nll - label_smoothing * logp.mean(1)
    return nll.mean()


class TrainStep:
    """Forward, loss, backward, and the optimizer step every ``accumulate`` micro-batches, without
    waiting for the device: the running loss and number correct are summed on the device, and so
    is the non-finite check (the first optimizer step whose loss was not finite). ``read()`` is the
    one place the host waits; the loop calls it every ``log_every`` steps and at the end of an epoch.

    ``net`` is the network as the step calls it (the model, or DDP around it). ``accelerate`` adds a
    compiled network for full-size batches; ``capture_graph`` replaces the forward and backward of
    full-size batches with a CUDA graph, captured once before any batch arrives (see ``capture_graph``).
    Other batch shapes run ``net`` eagerly (``uses_accelerated``).
    """

    def __init__(
        self,
        net: nn.Module,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        cfg: TrainConfig,
        device: torch.device,
        precision: str,
    ) -> None:
        self.net, self.model, self.optimizer, self.scaler = net, model, optimizer, scaler
        self.cfg, self.device, self.precision = cfg, device, precision
        self.sums = torch.zeros(2, dtype=sum_dtype(device), device=device)  # loss x images, correct
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.step_no = torch.zeros((), dtype=torch.long, device=device)
        self.eager: Callable[[torch.Tensor], torch.Tensor] = net
        self.accelerated: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.full_shape: tuple[int, ...] | None = None
        self.deterministic_loss = cfg.deterministic and device.type == "cuda"
        # the last optimizer step's global gradient norm before clipping (clip_grad_norm > 0), on the device
        self.grad_norm = torch.full((), math.nan, device=device)

    def accelerate(self, fn: Callable[[torch.Tensor], torch.Tensor], full_shape: tuple[int, ...]) -> None:
        """Run ``fn`` (``torch.compile(net)``) for batches of ``full_shape``, ``net`` for the others."""
        self.accelerated, self.full_shape = fn, tuple(full_shape)

    def capture_graph(
        self, full_shape: tuple[int, ...], channels_last: bool, make_graphed: Callable[..., Any] | None = None
    ) -> None:
        """Capture the forward and backward of a ``full_shape`` batch as a CUDA graph, now.

        Called while no input thread runs (a pinned-memory allocation by another thread during a
        capture invalidates it), with a batch of zeros of the full shape (not the first real batch,
        which after a resume may be an epoch's short last one), under the step's autocast (the casts
        are part of the graph), with the random states restored after the warm-up iterations that
        ``make_graphed_callables`` runs (they draw dropout masks). ``make_graphed_callables`` replaces
        the module's forward in training mode, so the original forward is kept for other shapes.
        """
        make_graphed = make_graphed or torch.cuda.make_graphed_callables
        eager_forward = self.model.forward  # the bound forward as it is before the graph replaces it
        x = torch.zeros(full_shape, device=self.device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with preserved_rng(self.device), autocast_context(self.device, self.precision, cache=False):
            graphed = make_graphed(self.model, (x,))
        self.eager, self.accelerated = eager_forward, cast(Callable[[torch.Tensor], torch.Tensor], graphed)
        self.full_shape = tuple(full_shape)

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
        if self.accelerated is not None and uses_accelerated(tuple(x.shape), self.full_shape):
            return self.accelerated(x)
        return self.eager(x)

    def micro(self, x: torch.Tensor, y: torch.Tensor, group: int, last: bool) -> None:
        """One micro-batch of an optimizer step's group of ``group``; ``last``: the group's last one.
        ``y``: labels, or class probabilities under MixUp/CutMix (a prediction then counts as correct
        when it is the class with the larger share, the training error column's meaning there)."""
        # DDP averages gradients once per optimizer step, on the group's last micro-batch
        no_sync = getattr(self.net, "no_sync", None)  # DDP's; a plain module has none
        sync = contextlib.nullcontext() if last or no_sync is None else no_sync()
        with sync:
            with autocast_context(self.device, self.precision, cache=not self.cfg.cuda_graphs):
                logits = self._forward(x)
                loss = cross_entropy(logits.float(), y, self.cfg.label_smoothing, self.deterministic_loss)
            self.scaler.scale(loss / group).backward()
        with torch.no_grad():
            lo = loss.detach()
            self.first_bad = torch.where((self.first_bad < 0) & ~torch.isfinite(lo), self.step_no, self.first_bad)
            self.sums[0] += lo.to(self.sums.dtype) * y.shape[0]
            hard = y.argmax(1) if y.is_floating_point() else y
            self.sums[1] += (logits.detach().argmax(1) == hard).sum()

    def update(self) -> None:
        if self.cfg.clip_grad_norm > 0:
            # the gradients are already averaged over the processes (DDP's reduce ran in the group's last
            # backward), so every process computes the same global norm and clips alike; unscaled first
            # under fp16 (a no-op otherwise), so the bound is on the true gradient; no host sync
            self.scaler.unscale_(self.optimizer)
            params = [q for g in self.optimizer.param_groups for q in g["params"] if q.grad is not None]
            self.grad_norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_grad_norm, foreach=True).detach()
        self.scaler.step(self.optimizer)  # fused optimizers take the scaler's inf check without a sync
        self.scaler.update()
        self.step_no += 1

    def read(self) -> tuple[float, float, int]:
        """(loss sum, correct, first non-finite step or -1): waits for the device."""
        vals = torch.cat([self.sums.double(), self.first_bad.double().view(1)]).tolist()
        return vals[0], vals[1], int(vals[2])
