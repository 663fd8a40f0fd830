"""Top-1 / top-5 error, per-class accuracy and the confusion matrix of a model on a dataset."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..data.loader import BatchLoader
from ..data.pipeline import Prefetcher, gather_threads
from ..data.transforms import TEN_VIEWS, EvalTransform, eval_batch
from ..distributed import all_reduce_sum
from ..files import atomic_savefig
from ..runtime import autocast_context, sum_dtype


@dataclass
class EvalResult:
    n: int
    loss: float
    top1_error: float
    top5_error: float
    k: int  # the "5" of top-5 (fewer when there are fewer than 5 classes)
    confusion: torch.Tensor  # (classes, classes) counts, rows = true class, columns = predicted
    classes: list[str]

    @property
    def per_class_accuracy(self) -> list[float]:
        totals = self.confusion.sum(1).clamp_min(1)
        return (self.confusion.diag() / totals).tolist()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "n": self.n,
            "top1_error": self.top1_error,
            "top5_error": self.top5_error,
            "top1_accuracy": 1.0 - self.top1_error,
            "top5_accuracy": 1.0 - self.top5_error,
            "top_k": self.k,
            "loss": self.loss,
        }
        d["per_class_accuracy"] = dict(zip(self.classes, self.per_class_accuracy))
        d["confusion_matrix"] = self.confusion.tolist()
        d["classes"] = self.classes
        return d


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean (N,) whether the label is among the k highest scores of each row."""
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1)


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    loader: BatchLoader,
    transform: EvalTransform,
    classes: list[str],
    *,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    channels_last: bool = False,
    progress: bool = False,
    ten_crop: bool = False,
    prefetch: int = 3,
) -> EvalResult:
    """Evaluation of ``model`` over every batch of ``loader``: on the centre crop, or with
    ``ten_crop=True`` on the average of the softmax outputs over the paper's ten patches (§4.1), each
    patch's batch run on its own (ten-patch testing holds one batch of patches at a time, not ten).

    Batches come through the same ``Prefetcher`` as training's; the counts and the confusion matrix
    stay on the device until the end (no host synchronisation per batch)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    nc = len(classes)
    k = min(5, nc)
    confusion = torch.zeros(nc * nc, dtype=torch.long, device=device)
    sums = torch.zeros(4, dtype=sum_dtype(device), device=device)  # loss, n, top-1 hits, top-k hits
    batches = Prefetcher(loader, device, depth=prefetch, threads=gather_threads())
    try:
        with tqdm(
            total=loader.num_images, desc="evaluate", unit="img", leave=False, disable=not progress or None
        ) as bar:
            for x, y in batches:
                if ten_crop:  # log of the mean softmax over the ten patches, one patch's batch at a time
                    probs = None
                    for view in range(TEN_VIEWS):
                        with autocast_context(device, precision):
                            out = model(eval_batch(x, transform, channels_last, view=view))
                        p = torch.softmax(out.float(), 1)
                        probs = p if probs is None else probs + p
                    assert probs is not None
                    logits = (probs / TEN_VIEWS).clamp_min(1e-12).log()
                else:
                    with autocast_context(device, precision):
                        logits = model(eval_batch(x, transform, channels_last)).float()
                pred = logits.argmax(1)
                sums[0] += F.cross_entropy(logits, y, reduction="sum")
                sums[1] += len(y)
                sums[2:] += torch.stack([(pred == y).sum(), topk_correct(logits, y, k).sum()])
                # index_add_, not bincount: a CUDA bincount reads the largest index on the host (a sync)
                confusion.index_add_(0, y * nc + pred, torch.ones_like(y))
                bar.update(len(y))
    finally:
        batches.close()
        model.train(was_training)
    # Under torchrun each process saw its own share of the images: add up the counts.
    totals, confusion = all_reduce_sum(sums, confusion)
    loss_sum, n, c1, ck = totals.tolist()
    n, c1, ck = int(n), int(c1), int(ck)
    confusion = confusion.view(nc, nc).cpu()
    if n == 0:
        return EvalResult(
            n=0, loss=math.nan, top1_error=math.nan, top5_error=math.nan, k=k, confusion=confusion, classes=classes
        )
    return EvalResult(
        n=n, loss=loss_sum / n, top1_error=1 - c1 / n, top5_error=1 - ck / n, k=k, confusion=confusion, classes=classes
    )


def plot_confusion(result: EvalResult, path: str | Path, title: str = "") -> None:
    """A PNG of the row-normalised confusion matrix (class names on the axes up to 40 classes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = result.confusion.float()
    cm = cm / cm.sum(1, keepdim=True).clamp_min(1)
    nc = len(result.classes)
    size = min(14, 4 + nc * 0.4)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(cm.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if nc <= 40:
        ax.set_xticks(range(nc), result.classes, rotation=90 if nc > 10 else 45, ha="right" if nc <= 10 else "center")
        ax.set_yticks(range(nc), result.classes)
        if nc <= 12:
            for i in range(nc):
                for j in range(nc):
                    v = cm[i, j].item()
                    if v >= 0.005:
                        ax.text(
                            j,
                            i,
                            f"{v:.2f}",
                            ha="center",
                            va="center",
                            fontsize=8,
                            color="white" if v > 0.5 else "black",
                        )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(
        title or f"top-1 error {result.top1_error:.2%}, top-{result.k} error {result.top5_error:.2%} (n={result.n})"
    )
    fig.tight_layout()
    atomic_savefig(fig, path, 110)
    plt.close(fig)
