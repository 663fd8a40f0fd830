"""The optimizer: which parameters are decayed (by role), the parameter groups of a config (per-layer
decay, bias and fine-tuning rate factors), and SGD or AdamW built on them."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from ..config import TrainConfig
from ..errors import UserError
from ..models.lenet import SparseConv


def decayed_parameter_names(model: nn.Module) -> list[str]:
    """The parameters weight decay applies to, chosen by role: the kernels of convolutional, linear
    and sparse (LeNet-5's C3) layers. Biases, LeNet's subsampling coefficients and anything else
    per-map are not decayed (a test lists the result for every model)."""
    layers = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, SparseConv)
    return [
        f"{name}.weight" if name else "weight"
        for name, m in model.named_modules()
        if isinstance(m, layers) and getattr(m, "weight", None) is not None and m.weight.requires_grad
    ]


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
    unknown = [
        layer
        for layer in cfg.weight_decay_layers
        if not any(n.rsplit(".", 1)[0].split(".")[-1] == layer or n.rsplit(".", 1)[0] == layer for n in decayed)
    ]
    if unknown:
        raise UserError(
            f"weight-decay-layers: no layer named {', '.join(map(repr, unknown))} with decayed weights "
            f"(the model's: {', '.join(sorted({n.rsplit('.', 1)[0] for n in decayed}))})"
        )
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
    return [
        {"params": ps, "weight_decay": wd, "lr_scale": scale, "lr": cfg.lr * scale}
        for (wd, scale), ps in groups.items()
    ]


def make_optimizer(
    cfg: TrainConfig, model: nn.Module, device: torch.device | None = None, loaded: set[str] | None = None
) -> torch.optim.Optimizer:
    device = device or next(model.parameters()).device
    groups = parameter_groups(cfg, model, loaded)
    kw = _optimizer_kwargs(cfg, device)
    try:
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=cfg.lr, **kw)
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0, **kw
        )
    except (RuntimeError, TypeError, ValueError) as e:
        if cfg.optimizer_impl != "auto":
            raise UserError(f"optimizer-impl {cfg.optimizer_impl}: not available here ({e})") from None
        return make_optimizer(dataclasses.replace(cfg, optimizer_impl="foreach"), model, device, loaded)


def base_lr(optimizer: torch.optim.Optimizer) -> float:
    """The schedule's learning rate (a group's rate over its ``lr_scale``)."""
    g = optimizer.param_groups[0]
    return g["lr"] / g.get("lr_scale", 1.0)
