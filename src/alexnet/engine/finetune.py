"""Fine-tuning: the checkpoint ``--init`` names, the layers of it that fit, and the frozen layers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..checkpoint import load_checkpoint
from ..config import TrainConfig
from ..errors import UserError


def init_source(cfg: TrainConfig) -> dict[str, Any]:
    """The checkpoint (or export) ``--init`` names, checked against the model being trained."""
    ck = load_checkpoint(cfg.init)
    if ck["model_name"] != cfg.model:
        raise UserError(
            f"--init {cfg.init}: holds a {ck['model_name']}, not a {cfg.model} (--model {ck['model_name']})"
        )
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
    say(
        f"--init {cfg.init}: loaded {len(loaded)} of {len(own)} tensors"
        + (f"; replaced (new shape, trained from scratch): {', '.join(replaced)}" if replaced else "")
        + (f"; not in the source: {', '.join(missing[:5])}" if missing else "")
    )
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
    hits = [
        i
        for i, layer in enumerate(layer_of)
        if layer == cfg.freeze or layer.endswith("." + cfg.freeze) or layer.startswith(cfg.freeze + ".")
    ]
    if not hits:
        layers = ", ".join(dict.fromkeys(layer.split(".")[-1] for layer in layer_of))
        raise UserError(f"--freeze {cfg.freeze}: no such layer or block (the model's: features, classifier, {layers})")
    frozen = names[: hits[-1] + 1]
    params = dict(model.named_parameters())
    for n in frozen:
        params[n].requires_grad_(False)
    say(f"--freeze {cfg.freeze}: {len(frozen)} parameter tensors frozen, up to {layer_of[hits[-1]]}")
    return frozen
