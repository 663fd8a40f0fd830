"""The learning rate of every step: warm-up, then a fixed schedule, or the paper's plateau rule."""

from __future__ import annotations

import math
from typing import Any

from ..config import TrainConfig


class LRSchedule:
    """Learning rate per step: warm-up, then constant / step / multistep / cosine / linear, or the paper's
    plateau rule (divide by 1/gamma when the val error has not improved by ``threshold`` for
    ``patience`` epochs, at most ``max_reductions`` times)."""

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int) -> None:
        self.cfg, self.steps_per_epoch = cfg, steps_per_epoch  # optimizer steps (after accumulation)
        self.total = cfg.epochs * steps_per_epoch
        self.best = math.inf
        self.bad_epochs = 0
        self.reductions = 0

    def warms_up(self) -> bool:
        # runs made before 2026-12-02 ignored warm-up under plateau; they resume as they ran (plateau_warmup)
        return self.cfg.warmup_epochs > 0 and (self.cfg.schedule != "plateau" or self.cfg.plateau_warmup)

    def warming(self, step: int) -> bool:
        """Whether step ``step`` (0-based) has a warm-up rate."""
        return self.warms_up() and step < self.cfg.warmup_epochs * self.steps_per_epoch

    def __call__(self, step: int) -> float:
        c = self.cfg
        warm = c.warmup_epochs * self.steps_per_epoch
        if step < warm and self.warms_up():
            f = c.lr_warmup_decay
            return c.lr * (f + (1 - f) * step / warm)
        if c.schedule == "plateau":
            return c.lr * c.gamma**self.reductions
        if c.schedule == "constant":
            return c.lr
        if c.schedule == "step":
            return c.lr * c.gamma ** (step // (c.step_size * self.steps_per_epoch))
        if c.schedule == "multistep":
            return c.lr * c.gamma ** sum(step >= m * self.steps_per_epoch for m in c.milestones)
        frac = (step - warm) / max(1.0, self.total - warm)
        if c.schedule == "cosine":
            return c.lr_min + (c.lr - c.lr_min) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
        return c.lr_min + (c.lr - c.lr_min) * max(0.0, 1.0 - frac)  # linear to lr_min

    def observe(self, val_error: float, epoch: int | None = None) -> bool:
        """Feed the val error of ``epoch`` (0-based; plateau only); True when the rate was just reduced.
        Epochs that end within the warm-up are not counted: the rule starts after it."""
        if self.cfg.schedule != "plateau" or math.isnan(val_error):
            return False
        if epoch is not None and self.warms_up() and epoch + 1 <= self.cfg.warmup_epochs:
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
