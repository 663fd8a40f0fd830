"""AlexNet in torchvision's layout: Krizhevsky, "One weird trick for parallelizing convolutional
neural networks", 2014 (the network ``torchvision.models.alexnet`` builds).

Not the 2012 network: 64-192-384-256-256 kernels, no LRN, no column groups, padding 2 in conv1,
dropout before fc6 and fc7, 61,100,840 parameters at 1000 classes. Its state-dict keys and shapes
(``features.0`` ... ``classifier.6``) are exactly torchvision's, so torchvision's published
weights load unchanged (published accuracy 56.522% top-1 / 79.066% top-5, single centre crop,
with its ImageNet mean/std normalisation). That key layout is a public contract: the ``activation``
and ``dropout`` options change behaviour only, never the keys.
"""

from __future__ import annotations

import torch
from torch import nn

from ._layers import make_activation
from ._registry import register_model


@register_model(
    "alexnet_tv", input_size=224, image_size=256, description="torchvision's AlexNet layout (loads its weights)"
)
class AlexNetTV(nn.Module):
    """AlexNet with torchvision's layers and state-dict keys."""

    def __init__(
        self, num_classes: int = 1000, *, in_chans: int = 3, activation: str = "relu", dropout: float = 0.5
    ) -> None:
        super().__init__()
        act = lambda: make_activation(activation)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 64, kernel_size=11, stride=4, padding=2),
            act(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            act(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            act(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            act(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            act(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            act(),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            act(),
            nn.Linear(4096, num_classes),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer (4096-d, after the second ReLU)."""
        return self.classifier[:-1](torch.flatten(self.avgpool(self.features(x)), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))
