"""Small functional entry points that mirror the CLI commands."""

from __future__ import annotations

import os

from .evaluate import EvalResult
from .predict import load


def evaluate(checkpoint: str | os.PathLike[str], data: str, *, split: str = "val", device: str = "auto",
             max_images: int | None = None, progress: bool = False) -> EvalResult:
    """Top-1/top-5 error of a run folder or checkpoint on a dataset SPEC (``alexnet evaluate``)."""
    return load(checkpoint, device).evaluate(data, split=split, max_images=max_images, progress=progress)
