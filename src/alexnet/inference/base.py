"""What a classifier answers, and which files it reads: shared by the torch ``Classifier`` and the
ONNX Runtime one (``alexnet.inference.onnx``), so this module imports neither torch nor onnxruntime."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..data.images import ImageError, load_square, walk_images


@dataclass
class Prediction:
    path: str
    labels: list[str]
    probs: list[float]
    indices: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "top": [
                {"label": name, "prob": p, "index": i} for name, p, i in zip(self.labels, self.probs, self.indices)
            ],
        }


class ClassifierBase:
    """Reading files for a classifier: subclasses give ``channels``, ``image_size`` and ``predict_images``."""

    # given by each subclass (a property of its transform, or of the ONNX file's metadata)
    @property
    def channels(self) -> int:
        raise NotImplementedError

    @property
    def image_size(self) -> int:
        raise NotImplementedError

    def predict_images(
        self, images: Sequence[Image.Image], top_k: int = 5, names: Sequence[str] | None = None
    ) -> list[Prediction]:
        raise NotImplementedError

    def predict_paths(
        self, paths: Iterable[str | os.PathLike[str]], top_k: int = 5, batch_size: int = 32
    ) -> Iterator[Prediction | tuple[str, str]]:
        """Yield a ``Prediction`` per readable image, or ``(path, reason)`` for a file that is not one."""
        batch: list[tuple[str, Image.Image]] = []
        for path in paths:
            try:
                # shrunk to the model's scale as soon as it is decoded (as training reads images): a batch
                # holds small squares, not 32 full-size decodes (8 PNGs of 13000x13000 took 6 GB so)
                img = load_square(path, 3 if self.channels == 3 else 1, self.image_size)
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


def expand_inputs(items: Iterable[str], note: Any = None) -> Iterator[str]:
    """Files as given; folders walked recursively for image files (sorted). Inside a folder,
    anything that is not a regular file (a FIFO, a socket, a device) is skipped with a one-line
    ``note(path, reason)``; a file given by name is yielded and reported when it is read."""
    for item in items:
        if Path(item).is_dir():
            yield from walk_images(item, note)
        else:
            yield item
