"""Checkpoints: written atomically, read without executing code from the file.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so
``torch.load(path, weights_only=True)`` reads it. Keys:
``model`` (state dict), ``model_name``, ``model_options``, ``num_classes``, ``classes``,
``eval_transform`` (dict, see ``data.transforms.EvalTransform``), ``config`` (the resolved run
config), ``epoch``, ``metrics`` (the last epoch's), ``format`` (version), and in ``last.pt`` also
``optimizer`` and ``train_state`` for resuming.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import UserError

FORMAT_VERSION = 1


def save_checkpoint(obj: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a checkpoint atomically (see ``atomic_torch_save``), stamped with the format version."""
    atomic_torch_save({**obj, "format": FORMAT_VERSION}, path)


def save_untrained_run(folder: str | os.PathLike[str], model_name: str, *, num_classes: int | None = None,
                       classes: list[str] | None = None, metrics: dict[str, Any] | None = None,
                       seed: int = 0) -> Path:
    """A run folder (``best.pt``) holding ``model_name`` as initialised (seeded), with the model's
    own input geometry and a plain mean/std transform: what benchmarks of speed and tests of the
    serving and export paths need when the weights do not matter."""
    from .data.transforms import EvalTransform
    from .models import create_model, model_info

    info = model_info(model_name)
    n = num_classes or (len(classes) if classes else info.num_classes)
    torch.manual_seed(seed)
    pad = 2 if model_name == "lenet5" else 0  # LeNet-5 takes 28x28 digits padded to 32
    crop = info.input_size - 2 * pad
    transform = EvalTransform(max(info.image_size, crop), crop, pad, info.in_chans, (120.0,) * info.in_chans,
                              (60.0,) * info.in_chans)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint({"model": create_model(model_name, num_classes=n).state_dict(), "model_name": model_name,
                     "model_options": {}, "num_classes": n, "classes": classes or [str(i) for i in range(n)],
                     "eval_transform": transform.to_dict(), "metrics": metrics or {}, "epoch": 0}, out / "best.pt")
    return out


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temp file in the same folder, fsync, rename over ``path``, fsync the folder.

    A crash or Ctrl-C at any moment leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            rec = _RecordingWriter(f)
            try:
                torch.save(obj, rec)
            except RuntimeError:
                # torch's zip writer turns a failed write (a full disk) into "unexpected pos";
                # the OSError behind it is what the caller can report
                if rec.error is not None:
                    raise rec.error from None
                raise
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class _RecordingWriter:
    """A file's write(), remembering the first OSError (torch.save hides it behind a RuntimeError)."""

    def __init__(self, f: Any) -> None:
        self.f, self.error = f, None

    def write(self, data: Any) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        self.f.flush()


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A run folder means its ``best.pt`` (else ``last.pt``); a file means itself; an export folder
    (``alexnet export``: config.json + model.safetensors) or ``hf-hub:ORG/NAME`` means that folder."""
    from .share import is_export, resolve_hub

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


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint (or a run folder's best one) safely; ``UserError`` if it is not one of ours."""
    p = resolve_checkpoint(path)
    if p.is_dir():  # an export folder: safetensors and JSON, nothing unpickled
        from .share import load_export

        return load_export(p)
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
    return ckpt
