"""Measurements of a finished experiment run: its final weights' top-1 error on the test split or on
its own training images, and their softmax outputs (for an ensemble)."""

from __future__ import annotations

from typing import Any

import torch

from ..checkpoint import load_checkpoint
from ..config import TrainConfig
from ..data.datasets import subset
from ..data.loader import BatchLoader
from ..data.pipeline import Prefetcher
from ..data.transforms import eval_batch
from ..engine.data import build_data, build_test
from ..engine.evaluation import evaluate_model
from ..models import create_model
from ..runtime import pick_device
from .library import Run


def _load(run: Run, split: str, max_images: int | None) -> tuple[TrainConfig, Any, list[str], torch.nn.Module, Any]:
    """The run's config, the images of ``split`` (its own training subset or the test split), its
    classes, its final weights (last.pt) on the run's device in eval mode, and (transform, device)."""
    cfg = TrainConfig.from_dict(run.config)
    train_ds, val_ds, classes, transform = build_data(cfg)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    test_ds = build_test(cfg, classes, transform) if split == "test" else None
    ds = subset(train_ds if split == "train" else test_ds if test_ds is not None else val_ds, max_images, 12345)
    ck = load_checkpoint(run.out / "last.pt")
    device = pick_device(cfg.device)
    model = create_model(ck["model_name"], num_classes=int(ck["num_classes"]), **ck.get("model_options", {}))
    model.load_state_dict(ck["model"])
    model.to(device).eval()
    return cfg, ds, classes, model, (transform, device)


def top1_error(
    run: Run, *, split: str = "test", ten_crop: bool = False, max_images: int | None = None, progress: bool = False
) -> float:
    """Top-1 error of the run's final weights on its test images or on the images it was trained on
    (``split="train"``: the same subset, seen through the evaluation transform)."""
    cfg, ds, classes, model, (transform, device) = _load(run, split, max_images)
    res = evaluate_model(
        model,
        BatchLoader(ds, 256, workers=cfg.workers),
        transform,
        classes,
        device=device,
        precision=cfg.precision,
        channels_last=cfg.channels_last,
        progress=progress,
        ten_crop=ten_crop,
    )
    return res.top1_error


@torch.no_grad()
def probabilities(run: Run, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """The softmax outputs (N, classes) of the run's final weights on the centre crop of every image of
    ``split``, in the dataset's order, and the labels (N,)."""
    cfg, ds, _, model, (transform, device) = _load(run, split, None)
    batches = Prefetcher(BatchLoader(ds, 256, workers=cfg.workers), device, depth=2, threads=1)
    probs, labels = [], []
    try:
        for x, y in batches:
            probs.append(torch.softmax(model(eval_batch(x, transform, cfg.channels_last)).float(), 1).cpu())
            labels.append(y.cpu())
    finally:
        batches.close()
    return torch.cat(probs), torch.cat(labels)
