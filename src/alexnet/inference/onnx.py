"""A classifier exported by ``alexnet export RUN --format onnx``, run with ONNX Runtime: no torch.

    clf = OnnxClassifier("runs/cifar/model.onnx")
    for p in clf.predict(["cat.jpg"], top_k=5):
        print(p.labels[0], p.probs[0])

The exported graph takes what decoding an image gives, ``image``: uint8 (N, C, S, S), the shorter
side resized to S and the central square kept (``alexnet.data.images.resize_center_square``), and
does the rest of the evaluation transform itself (the per-pixel mean image where the run has one,
the central crop, the padding, the per-channel mean and std) before the network and the softmax.
Its outputs are ``probabilities`` (N, classes, float32) and ``logits``. The file's metadata holds
the model's name and options, the classes, that transform and the run's metrics, all as JSON.

This module imports Pillow, numpy and onnxruntime only (``alexnet predict --onnx`` never imports torch).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..data.images import image_to_array, resize_center_square, to_mode
from ..errors import UserError
from .base import ClassifierBase, Prediction

ONNX_FORMAT = "alexnet-onnx"
INPUT, OUTPUTS = "image", ("probabilities", "logits")


def onnxruntime_module() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise UserError(
            'ONNX Runtime is not installed: pip install -e ".[export]" (or pip install onnxruntime)'
        ) from None
    return onnxruntime


class OnnxClassifier(ClassifierBase):
    """An exported ``model.onnx`` with its classes and transform (read from the file's metadata)."""

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        ort = onnxruntime_module()
        p = Path(path)
        if not p.is_file():
            raise UserError(f"--onnx {path}: no such file")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        providers = [x for x in ("CUDAExecutionProvider", "CPUExecutionProvider") if x in ort.get_available_providers()]
        try:
            self.session = ort.InferenceSession(str(p), opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for a broken file
            first = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
            raise UserError(f"--onnx {path}: not a readable ONNX model ({first})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("format") != ONNX_FORMAT:
            raise UserError(f"--onnx {path}: not written by `alexnet export --format onnx` (no {ONNX_FORMAT} metadata)")
        try:
            self.metadata: dict[str, Any] = {k: json.loads(v) for k, v in meta.items() if k != "format"}
            self.name = str(self.metadata["model_name"])
            self.classes = list(self.metadata["classes"])
            self.labels = list(self.metadata.get("class_names") or self.classes)
            self.transform = dict(self.metadata["eval_transform"])
            self._channels = int(self.transform["channels"])
            self._image_size = int(self.transform["image_size"])
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"--onnx {path}: its alexnet metadata is incomplete ({e})") from None
        self.path = p

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def image_size(self) -> int:
        return self._image_size

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Pillow images to the graph's input: uint8 (N, C, S, S)."""
        mode = 3 if self.channels == 3 else 1
        return np.stack([image_to_array(resize_center_square(to_mode(im, mode), self.image_size)) for im in images])

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUTS[0]], {INPUT: batch})[0]

    def predict_images(
        self, images: Sequence[Image.Image], top_k: int = 5, names: Sequence[str] | None = None
    ) -> list[Prediction]:
        if not images:
            return []
        probs = self.probabilities(self.preprocess(images))
        k = min(top_k, len(self.classes))
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        names = names or [""] * len(images)
        return [
            Prediction(n, [self.labels[j] for j in idx], [float(probs[r, j]) for j in idx], [int(j) for j in idx])
            for r, (n, idx) in enumerate(zip(names, top))
        ]
