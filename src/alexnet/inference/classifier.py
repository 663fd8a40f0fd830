"""Images in, top-k labels out: a trained run (or checkpoint) as a ``Classifier``.

Usage::

    clf = alexnet.load("runs/cifar")            # a run folder (best.pt) or a .pt file
    for p in clf.predict(["cat.jpg", "dog.png"], top_k=5):
        print(p.path, p.labels[0], p.probs[0])
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from ..checkpoint import load_checkpoint, resolve_checkpoint
from ..config import INTERPOLATIONS
from ..data.datasets import load_dataset, relabel, subset
from ..data.imagenet import imagenet_names, imagenet_wnids
from ..data.images import image_to_array, resize_center_square, to_mode
from ..data.loader import BatchLoader
from ..data.transforms import EvalTransform, eval_batch
from ..engine.evaluation import EvalResult, evaluate_model
from ..errors import UserError
from ..models import create_model
from ..runtime import pick_device, resolve_precision, slow_half_precision
from .base import ClassifierBase, Prediction, expand_inputs

__all__ = ["Classifier", "Prediction", "evaluate", "expand_inputs", "load"]


class Classifier(ClassifierBase):
    """A trained network with its class names and its evaluation transform."""

    def __init__(
        self,
        model: torch.nn.Module,
        classes: list[str],
        transform: EvalTransform,
        device: torch.device,
        name: str = "",
        checkpoint: dict | None = None,
    ) -> None:
        self.model, self.classes, self.transform, self.device, self.name = (
            model.eval(),
            classes,
            transform,
            device,
            name,
        )
        self.checkpoint = checkpoint or {}
        # what predictions print: human-readable names where the data had them (ImageNet WNIDs)
        self.labels = list(self.checkpoint.get("class_names") or classes)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], device: str = "auto", ema: bool = False) -> Classifier:
        """``ema``: the run's moving average of the weights (``--model-ema``) instead of the weights."""
        dev = pick_device(device)
        ck = load_checkpoint(path, ema=ema)
        try:
            model = create_model(ck["model_name"], num_classes=int(ck["num_classes"]), **ck.get("model_options", {}))
            model.load_state_dict(ck["model"])
            transform = EvalTransform.from_dict(ck["eval_transform"])
        except (KeyError, RuntimeError, TypeError) as e:
            raise UserError(
                f"{resolve_checkpoint(path)}: checkpoint does not match its model ({str(e).splitlines()[0]})"
            ) from None
        for key in ("model", "model_ema", "optimizer"):  # the weights live in the model now
            ck.pop(key, None)
        return cls(model.to(dev).eval(), list(ck["classes"]), transform, dev, ck["model_name"], ck)

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Pillow images to a normalised network batch (the evaluation transform)."""
        t = self.transform
        arrays = [
            torch.from_numpy(
                image_to_array(
                    resize_center_square(to_mode(im, 3 if t.channels == 3 else 1), t.image_size, t.interpolation)
                )
            )
            for im in images
        ]
        return eval_batch(torch.stack(arrays).to(self.device), t)

    @property
    def identities(self) -> list[str]:
        """Each output's class identity (a dataset's folder name: an ImageNet WNID). A checkpoint written
        before identities were stored for torchvision's weights holds the display names; those are
        the WNIDs in the same order."""
        return imagenet_wnids() if self.classes == imagenet_names() else list(self.classes)

    def match(self, ds: Any, what: str) -> Any:
        """``ds`` with its labels as this checkpoint's outputs, classes matched by identity: the same
        classes, or any subset of them (ImageNet's 1000 evaluated on a 10-class subset, say; every
        output still competes). A class the checkpoint does not know is an error naming it."""
        mine = self.identities
        theirs = list(ds.classes)
        if theirs == mine:
            return ds
        index = {c: i for i, c in enumerate(mine)}
        unknown = [c for c in theirs if c not in index]
        if unknown:
            raise UserError(
                f"{what}: {len(unknown)} of its {len(theirs)} classes are not the checkpoint's "
                f"({', '.join(unknown[:5])}{', ...' if len(unknown) > 5 else ''}; the checkpoint's: "
                f"{', '.join(mine[:5])}, ...)"
            )
        return relabel(ds, [index[c] for c in theirs], self.classes)

    def view(
        self, resize_size: int | None = None, crop_size: int | None = None, interpolation: str | None = None
    ) -> EvalTransform:
        """The checkpoint's evaluation transform at another resize, crop or interpolation (``evaluate``'s
        options), refused in one line naming the flag where it cannot work."""
        if resize_size is None and crop_size is None and interpolation is None:
            return self.transform
        for flag, v in (("--resize-size", resize_size), ("--crop-size", crop_size)):
            if v is not None and not 1 <= v <= 4096:
                raise UserError(f"{flag} {v}: must be in 1..4096")
        if interpolation is not None and interpolation not in INTERPOLATIONS:
            raise UserError(f"--interpolation must be one of {', '.join(INTERPOLATIONS)}, not {interpolation!r}")
        try:
            t = self.transform.resized(resize_size, crop_size, interpolation)
        except ValueError as e:
            raise UserError(f"--crop-size: {e} (--resize-size)") from None
        s = t.input_size
        try:
            with torch.no_grad():
                self.model(torch.zeros(1, t.channels, s, s, device=self.device))
        except RuntimeError as e:
            raise UserError(
                f"--crop-size {t.crop_size}: {self.name} cannot take {s}x{s} inputs"
                + (f" (the crop with its {t.pad}-pixel padding)" if t.pad else "")
                + f" ({str(e).splitlines()[0][:120]})"
            ) from None
        return t

    def run_precision(self) -> str:
        """The precision the checkpoint's run trained in (its config's), ``auto`` where it has none."""
        p = (self.checkpoint.get("config") or {}).get("precision", "auto")
        return p if p in PRECISIONS[1:] else "auto"

    @property
    def channels(self) -> int:
        return self.transform.channels

    @property
    def image_size(self) -> int:
        return self.transform.image_size

    @torch.no_grad()
    def predict_images(
        self, images: Sequence[Image.Image], top_k: int = 5, names: Sequence[str] | None = None
    ) -> list[Prediction]:
        """Top-k labels and softmax probabilities of Pillow images."""
        if not images:
            return []
        probs = torch.softmax(self.model(self.preprocess(images)).float(), dim=1).cpu()
        k = min(top_k, len(self.classes))
        p, i = probs.topk(k, dim=1)
        names = names or [""] * len(images)
        return [
            Prediction(n, [self.labels[j] for j in ii.tolist()], pp.tolist(), ii.tolist())
            for n, pp, ii in zip(names, p, i)
        ]

    def evaluate(
        self,
        data: str,
        *,
        split: str = "val",
        batch_size: int = 256,
        workers: int = 2,
        max_images: int | None = None,
        progress: bool = True,
        ten_crop: bool = False,
        precision: str = "run",
        resize_size: int | None = None,
        crop_size: int | None = None,
        interpolation: str | None = None,
    ) -> EvalResult:
        """Top-1/top-5 error on a dataset SPEC's split, with this checkpoint's classes and transform
        (``ten_crop``: averaged over the paper's ten patches instead of the centre crop). ``precision``:
        ``run`` (the precision the run trained and validated in; ``auto`` for a checkpoint without
        a training config), or ``auto`` (bf16 on a GPU that has it, else fp32), ``fp32``, ``bf16``, ``fp16``.
        ``resize_size``, ``crop_size``, ``interpolation``: torchvision's ``--val-resize-size``,
        ``--val-crop-size`` and ``--interpolation`` (the shorter side resized to ``resize_size``, the
        central square, its central ``crop_size``; default: the checkpoint's own)."""
        if precision not in PRECISIONS:
            raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        t = self.view(resize_size, crop_size, interpolation)
        ds = load_dataset(
            data, split, image_size=t.image_size, channels=t.channels, workers=workers, interpolation=t.interpolation
        )
        ds = subset(self.match(ds, f"--data {data}"), max_images, 1)
        loader = BatchLoader(ds, batch_size, workers=workers)
        # in the run's own precision by default (as training validated), channels-last on a GPU (tensor
        # cores), the default layout on the CPU
        gpu = self.device.type == "cuda"
        if gpu:
            self.model.to(memory_format=torch.channels_last)
        precision = resolve_precision(self.run_precision() if precision == "run" else precision, self.device)
        if note := slow_half_precision(precision, self.device):  # a GPU run's bf16, evaluated on a laptop
            print(note, file=sys.stderr)
        return evaluate_model(
            self.model,
            loader,
            t,
            self.classes,
            device=self.device,
            progress=progress,
            ten_crop=ten_crop,
            precision=precision,
            channels_last=gpu,
        )


PRECISIONS = ("run", "auto", "fp32", "bf16", "fp16")


def load(path: str | os.PathLike[str], device: str = "auto", ema: bool = False) -> Classifier:
    """A ``Classifier`` from a run folder (its best.pt), a checkpoint file, an export folder
    (``alexnet export``) or ``hf-hub:ORG/NAME``; ``ema``: with the run's moving average of the
    weights (``--model-ema``)."""
    return Classifier.from_checkpoint(path, device, ema)


def evaluate(
    checkpoint: str | os.PathLike[str],
    data: str,
    *,
    split: str = "val",
    device: str = "auto",
    max_images: int | None = None,
    progress: bool = False,
    ten_crop: bool = False,
    precision: str = "run",
    ema: bool = False,
    resize_size: int | None = None,
    crop_size: int | None = None,
    interpolation: str | None = None,
) -> EvalResult:
    """Top-1/top-5 error of a run folder or checkpoint on a dataset SPEC (``alexnet evaluate``); ``ema``:
    of the run's moving average of the weights; the rest as ``Classifier.evaluate``.

    Usage::

        result = alexnet.evaluate("runs/lenet5", "mnist:../shared/data")
        print(result.top1_error, result.top5_error)
    """
    return load(checkpoint, device, ema).evaluate(
        data,
        split=split,
        max_images=max_images,
        progress=progress,
        ten_crop=ten_crop,
        precision=precision,
        resize_size=resize_size,
        crop_size=crop_size,
        interpolation=interpolation,
    )
