"""The two kinds of dataset every SPEC becomes: images already in memory as one uint8 tensor, and an
image folder decoded on the fly; and the batch collation that drops unusable files."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset, get_worker_info

from .images import ImageError, image_to_array, load_image, resize_center_square


class InMemoryDataset(Dataset):
    """Images held as one (N, C, H, W) uint8 tensor."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> None:
        assert images.dtype == torch.uint8 and images.ndim == 4 and len(images) == len(labels)
        self.images, self.labels, self.classes = images, labels.long(), classes

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


@dataclass
class FolderDataset(Dataset):
    """An image folder decoded on the fly; an unusable file yields ``None`` (dropped by ``collate``)."""

    samples: list[tuple[str, int]]
    classes: list[str]
    image_size: int
    channels: int = 3
    skipped: list[tuple[str, str]] = field(default_factory=list)
    interpolation: str = "bilinear"  # how each image is resized (config.INTERPOLATIONS)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int) -> torch.Tensor:
        path, _ = self.samples[i]
        img = load_image(path, self.channels, min_side=self.image_size)
        img = resize_center_square(img, self.image_size, self.interpolation)
        return torch.from_numpy(image_to_array(img))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int] | tuple[None, tuple[str, str]]:
        try:
            return self.load(i), self.samples[i][1]
        except ImageError as e:
            return None, (self.samples[i][0], str(e))


def collate(batch: list) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]:
    """Stack uint8 images; unusable ones are dropped and their (path, reason) returned third.

    Images given as (C, H, W) views of (H, W, C) pixels (a decoder's layout) are stacked as they lie,
    into an (N, H, W, C) batch returned as its (N, C, H, W) view: channels-last, the layout the crops
    and the convolutions want, with no transposing copy. In a loader's worker process the batch is
    written straight into shared memory (as torch's default_collate does), not copied there after."""
    good = [(x, y) for x, y in batch if x is not None]
    errors = [y for x, y in batch if x is None]
    if not good:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.long), errors
    xs = [x for x, _ in good]
    hwc = all(x.ndim == 3 and x.shape[0] > 1 and x.permute(1, 2, 0).is_contiguous() for x in xs)
    if hwc:
        xs = [x.permute(1, 2, 0) for x in xs]
    out = None
    if get_worker_info() is not None and all(x.shape == xs[0].shape for x in xs):
        numel = len(xs) * xs[0].numel()
        out = xs[0].new(xs[0].untyped_storage()._new_shared(numel)).view(len(xs), *xs[0].shape)
    images = torch.stack(xs, out=out)
    return (images.permute(0, 3, 1, 2) if hwc else images), torch.tensor([y for _, y in good]), errors
