"""Images in, top-k labels out: a trained run (or checkpoint) as a ``Classifier``.

Usage::

    clf = alexnet.load("runs/cifar")            # a run folder (best.pt) or a .pt file
    for p in clf.predict(["cat.jpg", "dog.png"], top_k=5):
        print(p.path, p.labels[0], p.probs[0])
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from PIL import Image

from .checkpoint import load_checkpoint, resolve_checkpoint
from .data.images import ImageError, image_to_array, load_image, resize_center_square, to_mode, walk_images
from .data.transforms import EvalTransform, eval_batch
from .errors import UserError
from .evaluate import EvalResult, evaluate_model
from .models import create_model


@dataclass
class Prediction:
    path: str
    labels: list[str]
    probs: list[float]
    indices: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "top": [{"label": l, "prob": p, "index": i}
                                           for l, p, i in zip(self.labels, self.probs, self.indices)]}


class Classifier:
    """A trained network with its class names and its evaluation transform."""

    def __init__(self, model: torch.nn.Module, classes: list[str], transform: EvalTransform,
                 device: torch.device, name: str = "", checkpoint: dict | None = None) -> None:
        self.model, self.classes, self.transform, self.device, self.name = model.eval(), classes, transform, device, name
        self.checkpoint = checkpoint or {}
        # what predictions print: human-readable names where the data had them (ImageNet WNIDs)
        self.labels = list(self.checkpoint.get("class_names") or classes)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], device: str = "auto") -> "Classifier":
        from .train import pick_device

        dev = pick_device(device)
        ck = load_checkpoint(path)
        try:
            model = create_model(ck["model_name"], num_classes=int(ck["num_classes"]), **ck.get("model_options", {}))
            model.load_state_dict(ck["model"])
            transform = EvalTransform.from_dict(ck["eval_transform"])
        except (KeyError, RuntimeError, TypeError) as e:
            raise UserError(f"{resolve_checkpoint(path)}: checkpoint does not match its model ({str(e).splitlines()[0]})") from None
        ck.pop("model", None)
        ck.pop("optimizer", None)
        return cls(model.to(dev).eval(), list(ck["classes"]), transform, dev, ck["model_name"], ck)

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Pillow images to a normalised network batch (the evaluation transform)."""
        t = self.transform
        arrays = [
            torch.from_numpy(image_to_array(resize_center_square(to_mode(im, 3 if t.channels == 3 else 1), t.image_size)))
            for im in images
        ]
        return eval_batch(torch.stack(arrays).to(self.device), t)

    @torch.no_grad()
    def predict_images(self, images: Sequence[Image.Image], top_k: int = 5, names: Sequence[str] | None = None) -> list[Prediction]:
        """Top-k labels and softmax probabilities of Pillow images."""
        if not images:
            return []
        probs = torch.softmax(self.model(self.preprocess(images)).float(), dim=1).cpu()
        k = min(top_k, len(self.classes))
        p, i = probs.topk(k, dim=1)
        names = names or [""] * len(images)
        return [Prediction(n, [self.labels[j] for j in ii.tolist()], pp.tolist(), ii.tolist())
                for n, pp, ii in zip(names, p, i)]

    def predict_paths(self, paths: Iterable[str | os.PathLike[str]], top_k: int = 5,
                      batch_size: int = 32) -> Iterator[Prediction | tuple[str, str]]:
        """Yield a ``Prediction`` per readable image, or ``(path, reason)`` for a file that is not one."""
        batch: list[tuple[str, Image.Image]] = []
        t = self.transform
        for path in paths:
            try:
                img = load_image(path, 3 if t.channels == 3 else 1, min_side=t.image_size)
                batch.append((str(path), img))
            except ImageError as e:
                yield str(path), str(e)
            if len(batch) == batch_size:
                yield from self.predict_images([im for _, im in batch], top_k, [n for n, _ in batch])
                batch = []
        yield from self.predict_images([im for _, im in batch], top_k, [n for n, _ in batch])

    def predict(self, inputs: Sequence[str | os.PathLike[str] | Image.Image], top_k: int = 5) -> list[Prediction]:
        """Top-k predictions of paths or Pillow images; an unreadable path raises ``ImageError``."""
        out = []
        for x in inputs:
            if isinstance(x, Image.Image):
                out += self.predict_images([x], top_k)
            else:
                r = next(iter(self.predict_paths([x], top_k)))
                if isinstance(r, tuple):
                    raise ImageError(f"{r[0]}: {r[1]}")
                out.append(r)
        return out

    def evaluate(self, data: str, *, split: str = "val", batch_size: int = 256, workers: int = 2,
                 max_images: int | None = None, progress: bool = True, ten_crop: bool = False) -> EvalResult:
        """Top-1/top-5 error on a dataset SPEC's split, with this checkpoint's classes and transform
        (``ten_crop``: averaged over the paper's ten patches instead of the centre crop)."""
        from .data.datasets import load_dataset, subset
        from .data.loader import BatchLoader

        t = self.transform
        ds = load_dataset(data, split, image_size=t.image_size, channels=t.channels, workers=workers)
        if list(ds.classes) != self.classes:
            raise UserError(f"--data {data}: its classes ({', '.join(list(ds.classes)[:5])}, ...) are not the "
                            f"checkpoint's ({', '.join(self.classes[:5])}, ...)")
        ds = subset(ds, max_images, 1)
        loader = BatchLoader(ds, batch_size, workers=workers)
        return evaluate_model(self.model, loader, t, self.classes, device=self.device, progress=progress,
                              ten_crop=ten_crop)


def load(path: str | os.PathLike[str], device: str = "auto") -> Classifier:
    """A ``Classifier`` from a run folder (its best.pt), a checkpoint file, an export folder
    (``alexnet export``) or ``hf-hub:ORG/NAME``."""
    return Classifier.from_checkpoint(path, device)


def expand_inputs(items: Iterable[str], note: Any = None) -> Iterator[str]:
    """Files as given; folders walked recursively for image files (sorted). Inside a folder,
    anything that is not a regular file (a FIFO, a socket, a device) is skipped with a one-line
    ``note(path, reason)``; a file given by name is yielded and reported when it is read."""
    for item in items:
        if Path(item).is_dir():
            yield from walk_images(item, note)
        else:
            yield item
