"""``--decode gpu``: JPEG shards decoded on the training device, a batch at a time (nvJPEG on CUDA,
through torchcodec's ``decode_jpeg`` where it is installed, else torchvision.io's).

The loader's workers then only read each member's bytes (one ``pread``) and check its header against
the index; the batch travels as ``Encoded`` (the bytes, the labels' order, each image's RandomResizedCrop
box where the crop is taken at decode time), and ``Prefetcher`` turns it into the same uint8 (N, 3, S, S)
batch the workers would have made, on the device: the crop and its antialiased resize, or the central
square. The boxes come from the loader's own per-batch generator, as on the CPU path, so a resumed
run decodes and crops the same images the same way. A member whose bytes do not decode is reported
with its shard and key and dropped from the batch with its label, as on the CPU path.

On the CPU the same code decodes with libjpeg-turbo, the pixels the workers' decoder gives (a test
trains both ways and compares the weights bit for bit); that is how it is tested without a GPU.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode
from torchvision.io import decode_jpeg as tv_decode


@functools.cache  # looked up once: a failed import is not cached by Python, and this runs every batch
def jpeg_decoder() -> tuple[str, Callable[..., Any]]:
    """(name, ``decode_jpeg``): torchcodec's where installed (torchvision 0.29 deprecates its own in
    its favour), else torchvision.io's. Both take a list of 1-D uint8 CPU tensors and a device."""
    try:
        from torchcodec.decoders import decode_jpeg  # optional, not a dependency

        return "torchcodec", decode_jpeg
    except ImportError:

        def decode(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the deprecation notice, once per batch otherwise
                return tv_decode(data, mode=ImageReadMode.RGB, device=device)

        return "torchvision.io", decode


@dataclass
class Encoded:
    """A batch of JPEG members as the workers read them, decoded by ``decode``."""

    blob: torch.Tensor  # the members' bytes end to end, 1-D uint8 on the CPU (one tensor between processes)
    lengths: list[int]  # each member's share of it
    where: list[str]  # SHARD:KEY of each, for the one line a member that fails to decode gets
    size: int  # the side of the images out: the crop's (with boxes) or the stored square's
    boxes: torch.Tensor | None = None  # (N, 4) top, left, h, w in the stored image (RandomResizedCrop)
    report: Callable[[str, str], None] | None = None  # (where, why) of a member dropped

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def data(self) -> list[torch.Tensor]:
        """Each member's bytes (views of ``blob``)."""
        return list(self.blob.split(self.lengths))

    def pin_memory(self) -> Encoded:
        return self  # the decoder copies the bytes itself

    def decode(self, device: torch.device, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch as uint8 (N, 3, size, size) on ``device`` and its labels, less any member that
        does not decode (reported). The whole batch in one call; one at a time only when that fails."""
        _, decode_jpeg = jpeg_decoder()
        try:
            images: list[torch.Tensor | None] = list(decode_jpeg(self.data, device=device))
        except RuntimeError:  # some member is corrupt: find which, keep the others
            images = []
            for data, where in zip(self.data, self.where):
                try:
                    images.append(decode_jpeg([data], device=device)[0])
                except RuntimeError as e:
                    images.append(None)
                    if self.report is not None:
                        self.report(where, f"not a readable JPEG ({str(e).splitlines()[0][:120]})")
        keep = [k for k, im in enumerate(images) if im is not None]
        out = [self._shape(k, im) for k, im in enumerate(images) if im is not None]
        if not out:
            return torch.empty(0, 3, self.size, self.size, dtype=torch.uint8, device=device), y[:0]
        if len(keep) < len(images):
            y = y[torch.tensor(keep, device=y.device)]
        return torch.stack(out), y

    def _shape(self, k: int, image: torch.Tensor) -> torch.Tensor:
        """Image k as the workers would return it: its box resized to ``size`` (antialiased bilinear,
        as ``ShardDataset`` does), or its central square."""
        if self.boxes is not None:
            top, left, h, w = (int(v) for v in self.boxes[k])
            box = image[None, :, top : top + h, left : left + w].contiguous(memory_format=torch.channels_last)
            side = (self.size, self.size)
            if box.device.type == "cpu":  # torch's uint8 resize, as the workers do: the same pixels
                return F.interpolate(box, size=side, mode="bilinear", antialias=True, align_corners=False)[0]
            y = F.interpolate(box.float(), size=side, mode="bilinear", antialias=True, align_corners=False)
            return y.round().clamp(0, 255).to(torch.uint8)[0]
        h, w = image.shape[-2:]
        top, left = (h - self.size) // 2, (w - self.size) // 2
        return image[:, top : top + self.size, left : left + self.size]


def collate_encoded(batch: list) -> tuple[Encoded, torch.Tensor, list[tuple[str, str]]]:
    """``collate`` for members read as bytes: ``((bytes, where, box or None, size), label)`` items, or
    ``(None, (where, why))`` for one the worker refused; the bytes joined into one tensor."""
    good = [(x, y) for x, y in batch if x is not None]
    errors = [y for x, y in batch if x is None]
    data = [x[0] for x, _ in good]
    boxes = [x[2] for x, _ in good]
    blob = torch.frombuffer(bytearray(b"".join(data)), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
    encoded = Encoded(
        blob=blob,
        lengths=[len(d) for d in data],
        where=[x[1] for x, _ in good],
        size=good[0][0][3] if good else 0,
        boxes=torch.tensor(boxes, dtype=torch.long) if good and boxes[0] is not None else None,
    )
    return encoded, torch.tensor([y for _, y in good], dtype=torch.long), errors
