"""Model registry: ``create_model(name, **options)`` and ``list_models()``, as in timm.

Each network file registers its builder with the metadata the rest of the package needs to feed
it (input size, channels, the size images are stored at before cropping) without importing the
network's module by name.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..errors import UserError


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable[..., nn.Module]  # a module class or a keyword-only function
    input_size: int  # side of the square input the network is defined on
    in_chans: int  # channels the network takes by default
    image_size: int  # side images are resized/centre-cropped to before the (random) crop
    num_classes: int  # the paper's number of classes
    description: str

    def options(self) -> dict[str, object]:
        """The builder's keyword options and their defaults (``num_classes`` excluded)."""
        sig = inspect.signature(self.builder)
        return {n: p.default for n, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY and n != "num_classes"}


_MODELS: dict[str, ModelInfo] = {}

# The range of each numeric option, checked where options are parsed (``create_model``): a value past
# these builds no network any machine can hold (input_size 100000 asks for 120 GB) or none that trains.
# Numbers not named here are finite and within +-1e6.
RANGES: dict[str, tuple[float, float]] = {
    "in_chans": (1, 64),
    "input_size": (8, 4096),
    "width": (1e-3, 4096),
    "top_width": (1e-3, 64),
    "hidden": (1, 100_000),
    "lrn_scale": (1e-6, 1e6),
    "dropout": (0.0, 0.999),
    "hidden_bias": (-1e3, 1e3),
    "columns": (1, 2),
}


def register_model(
    name: str,
    *,
    input_size: int,
    in_chans: int = 3,
    image_size: int | None = None,
    num_classes: int = 1000,
    description: str = "",
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a keyword-only builder under ``name``."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = ModelInfo(
            name=name,
            builder=builder,
            input_size=input_size,
            in_chans=in_chans,
            image_size=image_size or input_size,
            num_classes=num_classes,
            description=description or (builder.__doc__ or "").strip().splitlines()[0],
        )
        return builder

    return wrap


def list_models() -> list[str]:
    """Names of every registered network, sorted."""
    return sorted(_MODELS)


def model_info(name: str) -> ModelInfo:
    """The registry entry of ``name``; a ``UserError`` naming the known models otherwise."""
    try:
        return _MODELS[name]
    except KeyError:
        raise UserError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def create_model(name: str, *, num_classes: int | None = None, **options: object) -> nn.Module:
    """Build a registered network.

    Usage: ``create_model("alexnet", num_classes=10, lrn=False)``. ``num_classes`` defaults to the
    paper's (1000 for the ImageNet nets, 10 for LeNet-5 and the CIFAR-10 nets). An unknown option
    is a ``UserError`` that names it and lists the valid ones.
    """
    info = model_info(name)
    valid = info.options()
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UserError(
            f"model {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(f'{k}={v!r}' for k, v in valid.items())}"
        )
    for key, value in options.items():  # a value of another type than the default's: named, not a traceback
        default = valid[key]
        _check_range(name, key, value)
        if default is None:
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, (int, float)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        else:
            ok = True
        if not ok:
            raise UserError(
                f"model {name!r}: option {key} takes a {type(default).__name__} like its default "
                f"{default!r}, not {value!r}"
            )
    if num_classes is not None and (isinstance(num_classes, bool) or not 1 <= num_classes <= 1_000_000):
        raise UserError(f"model {name!r}: num_classes must be 1..1,000,000, not {num_classes!r}"[:200])
    try:
        return info.builder(num_classes=num_classes or info.num_classes, **options)
    except (ValueError, TypeError) as e:
        raise UserError(f"model {name!r}: {e}") from None


def _check_range(name: str, key: str, value: object) -> None:
    """A numeric option finite and within its range (``RANGES``, else +-1e6); an integer option whole."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if key in ("in_chans", "input_size", "columns", "hidden"):
            raise UserError(f"model {name!r}: option {key} must be a whole number, not {str(value)[:40]!r}")
        return
    lo, hi = RANGES.get(key, (-1e6, 1e6))
    if not (math.isfinite(value) and lo <= value <= hi):
        raise UserError(f"model {name!r}: option {key} must be in {lo:g}..{hi:g}, not {value!r}"[:200])
    if key in ("in_chans", "input_size", "columns", "hidden") and not float(value).is_integer():
        raise UserError(f"model {name!r}: option {key} must be a whole number, not {value!r}")
