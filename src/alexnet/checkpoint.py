"""Checkpoints: one schema, written atomically, read without executing code from the file.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so
``torch.load(path, weights_only=True)`` reads it. ``CheckpointRecord`` is its schema, and the one
place a checkpoint dict is built. Keys:

``model`` (state dict), ``model_name``, ``model_options``, ``num_classes``, ``classes`` (each class's
identity: the dataset's folder name, an ImageNet WNID), ``class_names`` (what predictions print),
``eval_transform`` (dict, see ``data.transforms.EvalTransform``), ``config`` (the resolved run
config), ``environment``, ``epoch``, ``metrics`` (the last epoch's), ``format`` (version); with
``--init``, ``init_loaded``; with ``--model-ema``, ``model_ema`` (the averaged weights, keyed as
``model``); in ``last.pt`` also ``optimizer`` and ``train_state`` for resuming (``engine.resume``).

An export folder (``alexnet export --format safetensors``: ``model.safetensors`` + ``config.json``)
reads back as the same record; ``hf-hub:ORG/NAME`` names one on the Hugging Face Hub.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from .errors import UserError
from .files import atomic_torch_save

FORMAT_VERSION = 1
EXPORT_FORMAT = "alexnet-export"
MEAN_IMAGE_KEY = "__eval_transform__.mean_image"  # the mean image's name among an export's tensors


@dataclass
class CheckpointRecord:
    """What a checkpoint holds (see the module's docstring); ``to_dict`` is what is saved."""

    model: dict[str, torch.Tensor]
    model_name: str
    num_classes: int
    classes: list[str]
    eval_transform: dict[str, Any]
    model_options: dict[str, Any] = field(default_factory=dict)
    model_ema: dict[str, torch.Tensor] | None = None  # --model-ema: the averaged weights (the model's keys)
    class_names: list[str] | None = None  # None: the classes themselves
    config: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    epoch: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    init_loaded: list[str] | None = None  # the parameters --init loaded (their --lr-body group)
    optimizer: dict[str, Any] | None = None  # last.pt only
    train_state: dict[str, Any] | None = None  # last.pt only

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "model": self.model,
            "model_name": self.model_name,
            "model_options": self.model_options,
            "num_classes": self.num_classes,
            "classes": list(self.classes),
            "class_names": list(self.class_names or self.classes),
            "eval_transform": self.eval_transform,
            "config": self.config,
            "environment": self.environment,
            "epoch": self.epoch,
            "metrics": self.metrics,
        }
        if self.model_ema is not None:
            d["model_ema"] = self.model_ema
        if self.init_loaded:
            d["init_loaded"] = sorted(self.init_loaded)
        if self.optimizer is not None:
            d["optimizer"] = self.optimizer
        if self.train_state is not None:
            d["train_state"] = self.train_state
        return d


def nonfinite_tensors(state: Any) -> list[str]:
    """The names of a state dict's floating-point tensors that hold NaN or infinite values (sorted).
    Such weights are refused where they would be used: ``weights --file``, ``serve``."""
    if not isinstance(state, dict):
        return []
    return sorted(
        k
        for k, v in state.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())
    )


def save_checkpoint(obj: CheckpointRecord | dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a checkpoint atomically (``files.atomic_torch_save``), stamped with the format version."""
    d = obj.to_dict() if isinstance(obj, CheckpointRecord) else obj
    atomic_torch_save({**d, "format": FORMAT_VERSION}, path)


def is_export(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "config.json").is_file() and (p / "model.safetensors").is_file()


def resolve_hub(path: str) -> str:
    """``hf-hub:ORG/NAME`` to a local folder through huggingface_hub (its cache; a download when online)."""
    if not path.startswith("hf-hub:"):
        return path
    repo = path[len("hf-hub:") :]
    try:
        from huggingface_hub import snapshot_download  # optional: the [export] extra
    except ImportError:
        raise UserError(f'{path}: needs huggingface_hub (pip install -e ".[export]")') from None
    try:
        return snapshot_download(repo_id=repo, allow_patterns=["config.json", "model.safetensors", "README.md"])
    except Exception as e:
        raise UserError(
            f"{path}: could not be fetched ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"
        ) from None


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A run folder means its ``best.pt`` (else ``last.pt``); a file means itself; an export folder
    (``alexnet export``: config.json + model.safetensors) or ``hf-hub:ORG/NAME`` means that folder."""
    p = Path(resolve_hub(str(path)))
    if is_export(p):
        return p
    if p.is_dir():
        for name in ("best.pt", "last.pt"):
            if (p / name).is_file():
                return p / name
        raise UserError(f"{path}: a folder without best.pt or last.pt (not a run folder?)")
    if not p.is_file():
        raise UserError(f"{path}: no such checkpoint file or run folder")
    return p


def load_export(path: str | os.PathLike[str]) -> dict[str, Any]:
    """An export folder as a checkpoint dict (``CheckpointRecord``'s keys)."""
    p = Path(path)
    try:
        config = json.loads((p / "config.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{p}/config.json: not readable ({e})") from None
    if config.get("format") != EXPORT_FORMAT:
        raise UserError(f"{p}: config.json is not an {EXPORT_FORMAT} file")
    try:
        tensors = load_file(str(p / "model.safetensors"))
    except Exception as e:
        raise UserError(f"{p}/model.safetensors: not readable ({str(e).splitlines()[0][:160]})") from None
    transform = dict(config["eval_transform"])
    key = transform.get("mean_image")
    transform["mean_image"] = tensors.pop(key) if key else None
    return CheckpointRecord(
        model=tensors,
        model_name=config["model_name"],
        model_options=config.get("model_options", {}),
        num_classes=config["num_classes"],
        classes=config["classes"],
        class_names=config.get("class_names"),
        eval_transform=transform,
        metrics=config.get("metrics", {}),
        config=config.get("provenance", {}).get("config", {}),
    ).to_dict() | {"weights": config.get("weights", "model")}


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu", *, ema: bool = False
) -> dict[str, Any]:
    """Read a checkpoint (or a run folder's best one, or an export folder) safely; ``UserError`` if
    it is not one of ours. ``ema``: its ``model`` is the run's moving average of the weights
    (``--model-ema``; an error naming the file where it has none); ``weights`` says which."""
    p = resolve_checkpoint(path)
    if p.is_dir():  # an export folder: safetensors and JSON, nothing unpickled
        ck = load_export(p)
        if ema and ck.get("weights") != "ema":
            raise UserError(f"{p}: an export of the run's own weights, not of its EMA (export it with --ema)")
        return ck
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt, truncated, or holding objects weights_only refuses
        text = str(e)
        if "weights_only" in text or "Weights only load failed" in text or "Unsupported global" in text:
            # torch's message advises the unsafe full-pickle load: exactly what must not be done with
            # a hostile file, so it is not passed on
            why = "it holds Python objects that a safe load refuses to run (not a checkpoint of ours, or tampered with)"
        elif isinstance(e, (EOFError, RuntimeError)) and ("zip" in text.lower() or "eof" in text.lower() or not text):
            why = "truncated or corrupt"
        else:
            why = (text.strip().splitlines()[0] if text.strip() else type(e).__name__)[:160]
        raise UserError(f"{p}: not a readable checkpoint ({why}); it was not loaded") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_name" not in ckpt:
        raise UserError(f"{p}: not an alexnet checkpoint (no 'model' / 'model_name' keys)")
    if ckpt.get("format", 0) > FORMAT_VERSION:
        raise UserError(f"{p}: checkpoint format {ckpt['format']} is newer than this version reads ({FORMAT_VERSION})")
    if ema:
        if not isinstance(ckpt.get("model_ema"), dict):
            raise UserError(f"{p}: holds no EMA weights (its run trained without --model-ema)")
        ckpt["model"] = ckpt["model_ema"]
    ckpt["weights"] = "ema" if ema else "model"
    return ckpt
