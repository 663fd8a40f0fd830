"""Layer tables and multiply-add counts for ``alexnet models [NAME]``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ._registry import create_model, model_info
from .lenet import SparseConv


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]  # without the batch dimension
    params: int
    macs: int


def _macs(m: nn.Module, out: torch.Tensor) -> int:
    if isinstance(m, nn.Conv2d):
        return out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
    if isinstance(m, nn.Linear):
        return m.in_features * m.out_features
    if isinstance(m, SparseConv):
        return out[0, 0].numel() * m.weight.numel()
    return 0


def layer_table(model: nn.Module, input_shape: tuple[int, int, int]) -> list[LayerRow]:
    """One row per leaf module in call order, from a forward pass of one zero image."""
    rows: list[LayerRow] = []
    hooks = []
    for name, m in model.named_modules():
        if len(list(m.children())) == 0 and name:

            def hook(mod: nn.Module, inp: object, out: torch.Tensor, name: str = name) -> None:
                rows.append(
                    LayerRow(
                        name=name,
                        kind=type(mod).__name__,
                        output_shape=tuple(out.shape[1:]),
                        params=sum(p.numel() for p in mod.parameters(recurse=False) if p.requires_grad),
                        macs=_macs(mod, out),
                    )
                )

            hooks.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return rows


def count_params(model: nn.Module) -> int:
    """Trainable parameters (fixed buffers such as LeNet-5's RBF codes are not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass
class ModelSummary:
    name: str
    description: str
    params: int
    input_shape: tuple[int, int, int]
    macs: int
    layers: list[LayerRow]


def model_summary(name: str, **options: Any) -> ModelSummary:
    """Name, parameters, input shape and multiply-adds of one registered network at its defaults."""
    info = model_info(name)
    model = create_model(name, **options)
    in_chans = int(options.get("in_chans", info.in_chans))
    shape = (in_chans, info.input_size, info.input_size)
    rows = layer_table(model, shape)
    return ModelSummary(
        name=name,
        description=info.description,
        params=count_params(model),
        input_shape=shape,
        macs=sum(r.macs for r in rows),
        layers=rows,
    )
