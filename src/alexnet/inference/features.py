"""Features from any hidden layer of a trained network (``alexnet features``, ``alexnet neighbors``).

alexnet features RUN --data SPEC | IMAGE... --layer fc7 --out feats.npz
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..data.datasets import load_dataset, subset
from ..data.images import ImageError, load_square
from ..data.loader import BatchLoader
from ..data.transforms import eval_batch
from ..errors import UserError
from .base import expand_inputs
from .classifier import load

# the module whose output is each named layer's feature (after its ReLU), per model
FEATURE_LAYERS = {
    "alexnet": {"pool5": "avgpool", "fc6": "classifier.act6", "fc7": "classifier.act7"},
    "alexnet_tv": {"pool5": "avgpool", "fc6": "classifier.2", "fc7": "classifier.5"},
}


def feature_layers(model_name: str) -> list[str]:
    return list(FEATURE_LAYERS.get(model_name, {})) + ["last"]


def feature_layer(model_name: str, layer: str | None) -> str:
    """``layer`` checked against the model's (None: fc7 where the model has it, else ``last``)."""
    names = feature_layers(model_name)
    layer = layer or ("fc7" if "fc7" in names else "last")
    if layer not in names:
        raise UserError(f"--layer {layer}: {model_name} has no such layer; it has {', '.join(names)}")
    return layer


def last_hidden(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last hidden layer: ``forward_features`` where the model has it, else the input of its
    last Linear layer."""
    forward_features = getattr(model, "forward_features", None)
    if forward_features is not None:
        return forward_features(x).flatten(1)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UserError(f"{type(model).__name__} has no fully-connected layer whose input could serve as features")
    got: list[torch.Tensor] = []
    handle = linears[-1].register_forward_pre_hook(lambda m, inp: got.append(inp[0]))
    try:
        model(x)
    finally:
        handle.remove()
    return got[0].flatten(1)


@torch.no_grad()
def extract(model: nn.Module, model_name: str, x: torch.Tensor, layer: str) -> torch.Tensor:
    """(N, D) features of network inputs ``x`` at ``layer`` (``last``: the input of the output layer)."""
    layer = feature_layer(model_name, layer)
    if layer == "last":
        return last_hidden(model, x).flatten(1).float()
    module = dict(model.named_modules())[FEATURE_LAYERS[model_name][layer]]
    got: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda m, i, o: got.append(o.detach().flatten(1).float().clone()))
    try:
        model(x)
    finally:
        handle.remove()
    return got[0]


def extract_features(
    run: str,
    *,
    layer: str | None = None,
    data: str | None = None,
    images: Iterable[str] = (),
    batch_size: int = 64,
    device: str = "auto",
    progress: bool = True,
    max_images: int | None = None,
) -> dict[str, Any]:
    """Features of a dataset's images (``data``: its training split) or of image files, batched, with a
    progress bar: ``{"features": (N, D) float32, "labels": (N,) int (-1 for files), "paths": [...]}``.
    ``layer`` None: fc7 where the model has it, else ``last`` (the input of the output layer)."""
    clf = load(run, device)
    layer = feature_layer(clf.name, layer)  # before the work
    t = clf.transform
    feats: list[torch.Tensor] = []
    labels: list[int] = []
    paths: list[str] = []
    errors: list[tuple[str, str]] = []
    if data:
        ds = subset(load_dataset(data, "train", image_size=t.image_size, channels=t.channels), max_images, 0)
        loader = BatchLoader(ds, batch_size, workers=2)
        for x, y in tqdm(loader, desc="features", unit="batch", disable=not progress or None, leave=False):
            feats.append(extract(clf.model, clf.name, eval_batch(x.to(clf.device), t), layer).cpu())
            labels += y.tolist()
        samples = getattr(ds, "samples", None)
        paths = [p for p, _ in samples] if samples else [f"{data}#{i}" for i in range(len(labels))]
    else:
        files = list(expand_inputs(images))
        for k in tqdm(
            range(0, len(files), batch_size), desc="features", unit="batch", disable=not progress or None, leave=False
        ):
            batch, names = [], []
            for f in files[k : k + batch_size]:
                try:
                    batch.append(load_square(f, 3 if t.channels == 3 else 1, t.image_size))  # small at once
                    names.append(f)
                except ImageError as e:
                    errors.append((f, str(e)))
            if batch:
                feats.append(extract(clf.model, clf.name, clf.preprocess(batch), layer).cpu())
                paths += names
        labels = [-1] * len(paths)
    features = torch.cat(feats) if feats else torch.empty(0, 0)
    return {
        "features": features.numpy().astype(np.float32),
        "labels": np.asarray(labels, dtype=np.int64),
        "paths": paths,
        "layer": layer,
        "model": clf.name,
        "errors": errors,
    }
