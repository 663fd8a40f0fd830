"""Krizhevsky's cuda-convnet CIFAR-10 networks, the likely "four-layer CNN" of the AlexNet paper's
CIFAR-10 claims (ReLU vs tanh in Figure 1; LRN: 13% vs 11%).

From the layer configs shipped with cuda-convnet (``layers-80sec.cfg``, ``layers-18pct.cfg``):
- ``cifar_80sec``: conv32-maxpool-conv32-avgpool-conv64-avgpool-fc64-fc10 (26% in 80 s, GTX 580).
- ``cifar_18pct``: the same without fc64 and with response normalisation after pool1 and pool2
  (18% in 20 min, GTX 580).
All convolutions are 5x5 with padding 2 and ReLU; pools are 3x3 stride 2 with the output size
rounded up (32 -> 16 -> 8 -> 4, ``ceil_mode=True``); the first pool is max, the others average.

The 18pct net's normalisation (``lrn="spatial"``) is cuda-convnet's ``rnorm``: over a 3x3
neighbourhood within each map, scale 5e-5 (divided by the 9 pixels of the window), power 0.75.
``lrn="cross"`` uses ``cmrnorm`` instead, across 9 adjacent maps with scale 0.001 (divided by 9),
power 0.75: the kind the AlexNet paper describes, as in layers-conv-local-11pct. Both act on
activations at cuda-convnet's scale, so feed these nets mean-subtracted 0-255 pixels (the shipped
recipes do) for the normalisation to do what it did there.

Initialisation ("cuda-convnet"): weights from N(0, initW) with the configs' initW (conv1 1e-4,
the other conv layers 1e-2, fc64 and fc10 1e-1 for 80sec, fc10 1e-2 for 18pct); biases 0.
"torch" keeps PyTorch's defaults.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ._layers import CrossMapLRN, SpatialResponseNorm, make_activation
from ._registry import register_model


class CudaConvnetCifar(nn.Module):
    def __init__(
        self,
        num_classes: int = 10,
        *,
        in_chans: int = 3,
        activation: str = "relu",
        lrn: str = "none",
        fc64: bool = False,
        init: str = "cuda-convnet",
    ) -> None:
        super().__init__()
        if lrn not in ("none", "spatial", "cross"):
            raise ValueError(f"lrn must be 'none', 'spatial' or 'cross', not {lrn!r}")

        def norm(channels: int) -> nn.Module:
            if lrn == "spatial":
                return SpatialResponseNorm(3, 5e-5, 0.75)
            if lrn == "cross":
                return CrossMapLRN(9, 1e-3, 0.75, k=1.0, alpha_over_n=True)
            return nn.Identity()

        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(in_chans, 32, 5, padding=2)),
                    ("act1", make_activation(activation)),
                    ("pool1", nn.MaxPool2d(3, 2, ceil_mode=True)),
                    ("norm1", norm(32)),
                    ("conv2", nn.Conv2d(32, 32, 5, padding=2)),
                    ("act2", make_activation(activation)),
                    ("pool2", nn.AvgPool2d(3, 2, ceil_mode=True)),
                    ("norm2", norm(32)),
                    ("conv3", nn.Conv2d(32, 64, 5, padding=2)),
                    ("act3", make_activation(activation)),
                    ("pool3", nn.AvgPool2d(3, 2, ceil_mode=True)),
                ]
            )
        )
        head: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
        if fc64:
            head += [("fc64", nn.Linear(64 * 4 * 4, 64)), ("act4", make_activation(activation))]
        head += [("fc10", nn.Linear(64 if fc64 else 64 * 4 * 4, num_classes))]
        self.classifier = nn.Sequential(OrderedDict(head))
        self.init_weights(init, fc_std=0.1 if fc64 else 0.01)

    def init_weights(self, scheme: str, fc_std: float) -> None:
        if scheme == "torch":
            return
        if scheme != "cuda-convnet":
            raise ValueError(f"init must be 'cuda-convnet' or 'torch', not {scheme!r}")
        for name, m in [*self.features.named_children(), *self.classifier.named_children()]:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                std = 1e-4 if name == "conv1" else 1e-2 if isinstance(m, nn.Conv2d) else fc_std
                nn.init.normal_(m.weight, 0.0, std)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the output layer (flattened pool3, or fc64 after its ReLU)."""
        return self.classifier[:-1](self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("cifar_80sec", input_size=32, num_classes=10, description="cuda-convnet layers-80sec CIFAR-10 net (26% in 80 s)")
def cifar_80sec(
    *, num_classes: int = 10, in_chans: int = 3, activation: str = "relu", lrn: str = "none", init: str = "cuda-convnet"
) -> CudaConvnetCifar:
    """cuda-convnet's layers-80sec: conv32-maxpool-conv32-avgpool-conv64-avgpool-fc64-fc10."""
    return CudaConvnetCifar(num_classes, in_chans=in_chans, activation=activation, lrn=lrn, fc64=True, init=init)


@register_model("cifar_18pct", input_size=32, num_classes=10, description="cuda-convnet layers-18pct CIFAR-10 net (18% in 20 min)")
def cifar_18pct(
    *, num_classes: int = 10, in_chans: int = 3, activation: str = "relu", lrn: str = "spatial", init: str = "cuda-convnet"
) -> CudaConvnetCifar:
    """cuda-convnet's layers-18pct: conv32-maxpool-rnorm-conv32-avgpool-rnorm-conv64-avgpool-fc10."""
    return CudaConvnetCifar(num_classes, in_chans=in_chans, activation=activation, lrn=lrn, fc64=False, init=init)
