"""The paper's qualitative figures from any checkpoint.

- ``plot_kernels``: the first convolutional layer's kernels as a grid of RGB (or grey) tiles, the
  paper's Figure 3; for a two-column ``alexnet`` the columns' kernels side by side.
- ``nearest_neighbours``: for each query image, the training images whose last-hidden-layer
  features are nearest in Euclidean distance, the right half of the paper's Figure 4.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .data.datasets import load_dataset, subset
from .data.images import ImageError, load_image
from .data.loader import BatchLoader
from .data.transforms import eval_batch
from .errors import UserError
from .files import atomic_savefig
from .inference.classifier import load
from .inference.features import extract


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            return name, m
    raise UserError(f"{type(model).__name__} has no convolutional layer to draw")


def kernel_tiles(weight: torch.Tensor) -> np.ndarray:
    """(K, C, h, w) weights to (K, h, w, C) tiles in [0, 1], each kernel scaled on its own around
    grey (0.5 = 0), the way Figure 3 shows them. Inputs with other than 3 channels show channel 0."""
    w = weight.detach().float().cpu()
    if w.shape[1] != 3:
        w = w[:, :1]
    w = w - w.mean(dim=(1, 2, 3), keepdim=True)
    scale = w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    return (0.5 + 0.5 * w / scale).permute(0, 2, 3, 1).numpy()


def plot_kernels(model: nn.Module, out: Path, *, title: str = "", columns: int = 1) -> Path:
    """Draw the first conv layer's kernels; ``columns=2`` draws each half of them as one panel."""
    name, conv = first_conv(model)
    tiles = kernel_tiles(conv.weight)
    k = len(tiles)
    groups = columns if columns > 1 and k % columns == 0 else 1
    per = k // groups
    ncol = math.ceil(math.sqrt(per * 2)) if per > 16 else math.ceil(math.sqrt(per))
    nrow = math.ceil(per / ncol)
    h, w = tiles.shape[1:3]
    pad = max(1, h // 8)
    panels = []
    for g in range(groups):
        canvas = np.ones((nrow * (h + pad) + pad, ncol * (w + pad) + pad, tiles.shape[3]))
        for i in range(per):
            r, c = divmod(i, ncol)
            canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = (
                tiles[g * per + i]
            )
        panels.append(canvas)
    plt = _pyplot()
    fig, axes = plt.subplots(1, groups, figsize=(4.2 * groups * ncol / max(nrow, 1) ** 0.5 / 3 + 2, 4.4), squeeze=False)
    for g, (ax, canvas) in enumerate(zip(axes[0], panels)):
        ax.imshow(
            canvas.squeeze(-1) if canvas.shape[-1] == 1 else canvas,
            cmap="gray" if canvas.shape[-1] == 1 else None,
            interpolation="nearest",
        )
        ax.set_axis_off()
        if groups > 1:
            ax.set_title(f"column {g + 1}: kernels {g * per + 1}-{(g + 1) * per}", fontsize=9)
    c_in = conv.weight.shape[1]
    fig.suptitle(title or f"{name}: {k} kernels of size {h}x{w}x{c_in}", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_savefig(fig, out, 150)
    plt.close(fig)
    return out


def nearest_neighbours(
    run: str | os.PathLike[str],
    queries: Sequence[str],
    data: str,
    out: Path,
    *,
    k: int = 6,
    max_images: int | None = None,
    device: str = "auto",
    batch_size: int = 256,
    progress: bool = True,
    layer: str = "last",
) -> dict:
    """For each query image, the k training images nearest to it at ``layer`` (what ``alexnet
    features`` extracts; by default the last hidden layer, as in Figure 4), drawn as one PNG: a row
    per query, the query (with its top prediction) then its neighbours."""
    clf = load(run, device)
    t = clf.transform
    images: list[Any] = []
    names: list[str] = []
    for q in queries:
        try:
            images.append(load_image(q, 3 if t.channels == 3 else 1, min_side=t.image_size))
            names.append(str(q))
        except ImageError as e:
            raise UserError(f"--query {q}: {e}") from None
    if not images:
        raise UserError("--query: give at least one image")
    ds = load_dataset(data, "train", image_size=t.image_size, channels=t.channels, workers=2)
    ds = subset(clf.match(ds, f"--data {data}"), max_images, 0)
    k = min(k, len(ds))  # no more neighbours than images searched
    model = clf.model
    with torch.no_grad():
        qf = extract(model, clf.name, clf.preprocess(images), layer)
        preds = clf.predict_images(images, top_k=1)
        best_d = torch.full((len(images), k), math.inf)
        best_i = torch.full((len(images), k), -1, dtype=torch.long)
        loader = BatchLoader(ds, batch_size, workers=2)
        offset = 0
        for x, _ in tqdm(loader, desc="features", unit="batch", disable=not progress, leave=False):
            f = extract(model, clf.name, eval_batch(x.to(clf.device), t), layer)
            d = torch.cdist(qf, f, compute_mode="donot_use_mm_for_euclid_dist").cpu()  # exact: a duplicate is at 0
            idx = torch.arange(offset, offset + len(f)).expand(len(images), -1)
            all_d, all_i = torch.cat([best_d, d], 1), torch.cat([best_i, idx], 1)
            best_d, pos = all_d.topk(min(k, all_d.shape[1]), dim=1, largest=False)
            best_i = all_i.gather(1, pos)
            offset += len(f)
    # the loader yields the dataset in order (no shuffling), less any unreadable files it skipped
    skipped = {p for p, _ in loader.skipped}
    order = [i for i, (p, _) in enumerate(ds.samples) if p not in skipped] if skipped else []
    result: dict[str, Any] = {"queries": []}
    plt = _pyplot()
    fig, axes = plt.subplots(len(images), k + 1, figsize=(1.6 * (k + 1), 1.8 * len(images)), squeeze=False)
    for qi, (img, name, pred) in enumerate(zip(images, names, preds)):
        ax = axes[qi][0]
        ax.imshow(np.asarray(img), cmap="gray" if t.channels == 1 else None)
        ax.set_title(f"query\n{pred.labels[0]} ({pred.probs[0]:.0%})", fontsize=7, color="darkblue")
        entry: dict[str, Any] = {"query": name, "prediction": pred.labels[0], "neighbours": []}
        for j in range(k):
            ax = axes[qi][j + 1]
            found = int(best_i[qi, j])
            if found < 0:
                ax.set_axis_off()
                continue
            i = order[found] if order else found
            x, label = ds[i]
            arr = x.permute(1, 2, 0).numpy()  # (C, H, W) uint8 to (H, W, C)
            ax.imshow(arr.squeeze(-1) if arr.shape[-1] == 1 else arr, cmap="gray" if arr.shape[-1] == 1 else None)
            ax.set_title(f"{clf.labels[int(label)]}\nd={float(best_d[qi, j]):.1f}", fontsize=7)
            entry["neighbours"].append({"index": i, "label": clf.labels[int(label)], "distance": float(best_d[qi, j])})
        for ax in axes[qi]:
            ax.set_xticks([])
            ax.set_yticks([])
        result["queries"].append(entry)
    fig.suptitle(
        f"nearest training images in the last hidden layer ({qf.shape[1]}-d), Euclidean ({offset:,} images searched)",
        fontsize=9,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_savefig(fig, out, 130)
    plt.close(fig)
    result["out"] = str(out)
    result["searched"] = offset
    return result
