"""MixUp and CutMix on the training batch: torchvision.transforms.v2's own (``MixUp``, ``CutMix``, and
``RandomChoice`` between them when both are on, torchvision's reference rule), applied to each
micro-batch after the augmentation, on the device. They draw from torch's global CPU generator, which
the training loop seeds per (seed, epoch, process) and a mid-epoch checkpoint saves and restores, so
a resumed run mixes the same pairs with the same weights. The targets come back as class
probabilities; the loss takes them (``step.cross_entropy``)."""

from __future__ import annotations

import torch
from torchvision.transforms import v2


class BatchMix:
    """``(x, y) -> (mixed x, soft targets (N, classes))`` for a batch of float images and int labels."""

    def __init__(self, mixup_alpha: float, cutmix_alpha: float, num_classes: int) -> None:
        ts: list[v2.Transform] = []
        if mixup_alpha > 0:
            ts.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
        if cutmix_alpha > 0:
            ts.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
        if not ts:
            raise ValueError("BatchMix needs mixup_alpha or cutmix_alpha above 0")
        self.transform = ts[0] if len(ts) == 1 else v2.RandomChoice(ts)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mixed, soft = self.transform(x, y)
        return mixed, soft


def make_mix(mixup_alpha: float, cutmix_alpha: float, num_classes: int) -> BatchMix | None:
    """The run's batch mixing, or None when both are off."""
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return None
    return BatchMix(mixup_alpha, cutmix_alpha, num_classes)
