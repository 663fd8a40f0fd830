"""Krizhevsky's cuda-convnet CIFAR-10 networks, the likely "four-layer CNN" of the AlexNet paper's
CIFAR-10 claims (ReLU vs tanh in Figure 1; LRN: 13% vs 11%).

From the layer configs shipped with cuda-convnet (``layers-80sec.cfg``, ``layers-18pct.cfg``):
- ``cifar_80sec``: conv32-maxpool-conv32-avgpool-conv64-avgpool-fc64-fc10 (26% in 80 s, GTX 580).
- ``cifar_18pct``: the same without fc64 and with response normalisation after pool1 and pool2
  (18% in 20 min, GTX 580).
All convolutions are 5x5 with padding 2 and ReLU; pools are 3x3 stride 2 with the output size
rounded up (32 -> 16 -> 8 -> 4, ``ceil_mode=True``); the first pool is max, the others average.
cuda-convnet's AvgPooler divides each window by the number of its pixels inside the map
(``regionSize = (loopEndY - loopStartY) * (loopEndX - loopStartX)`` in its pooling kernels, the
backward pass likewise): the last window of a row, which overhangs the border, holds 2 of 3 columns
and is divided by 6. torch's ceil-mode ``AvgPool2d`` (no padding) does exactly that, so the average
pools are plain ``nn.AvgPool2d`` (and export to ONNX's AveragePool as they are).

The 18pct net's normalisation (``lrn="spatial"``) is cuda-convnet's ``rnorm``: over a 3x3
neighbourhood within each map, scale 5e-5 (divided by the 9 pixels of the window), power 0.75.
``lrn="cross"`` uses ``cmrnorm`` instead, across 9 adjacent maps with scale 0.001 (divided by 9),
power 0.75: the kind the AlexNet paper describes, as in layers-conv-local-11pct. Both act on
activations at cuda-convnet's scale, so feed these nets mean-subtracted 0-255 pixels (the shipped
recipes do) for the normalisation to do what it did there.

Ablation options (the paper's experiments, ``alexnet experiment``): ``activation`` (relu | tanh),
``lrn``, ``pool`` ("overlap": 3x3 stride 2 as in the configs; "non-overlap" or "nonoverlap": 2x2 stride 2, §3.4),
``dropout`` (probability, on the output of the hidden fully-connected layer, as the paper drops
the outputs of its hidden FC layers; only ``cifar_80sec`` has one),
``columns`` (2: conv1 and conv2 doubled into two grouped columns that meet at conv3, as the two GPUs
of §3.2 do; 1: the configs' single column, i.e. "half the kernels"), ``hidden`` (width of
80sec's hidden fc layer), ``input_size`` (32, or 24 for the paper-style random crops) and
``lrn_scale`` (the normalisation acts as on activations this many times larger: with standardised
inputs, ``lrn_scale=64`` puts cuda-convnet's constants back at the scale of its raw 0-255 pixels),
``width`` (kernels per column in conv1 and conv2; 32 in the configs), ``pools`` ("cuda-convnet": max,
average, average as in the configs; "max": all three max, for §3.4's claim about max pooling) and
``hidden_bias`` (the initial bias of conv2, conv3 and fc64: §5's 1; None keeps the init's).

Initialisation ("cuda-convnet"): weights from N(0, initW) with the configs' initW (conv1 1e-4,
the other conv layers 1e-2, fc64 and fc10 1e-1 for 80sec, fc10 1e-2 for 18pct); biases 0.
"torch" keeps PyTorch's defaults.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ._layers import POOL_KINDS, CrossMapLRN, SpatialResponseNorm, make_activation
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
        hidden: int = 64,
        pool: str = "overlap",
        dropout: float = 0.0,
        columns: int = 1,
        input_size: int = 32,
        lrn_scale: float = 1.0,
        init: str = "cuda-convnet",
        width: int = 32,
        pools: str = "cuda-convnet",
        hidden_bias: float | None = None,
    ) -> None:
        super().__init__()
        if pools not in ("cuda-convnet", "max"):
            raise ValueError(
                f"pools must be 'cuda-convnet' (max, average, average) or 'max' (all three), not {pools!r}"
            )
        if width < 1:
            raise ValueError(f"width must be at least 1, not {width!r}")
        if lrn not in ("none", "spatial", "cross"):
            raise ValueError(f"lrn must be 'none', 'spatial' or 'cross', not {lrn!r}")
        if pool not in POOL_KINDS:  # both spellings of the non-overlapping pool, in every model
            raise ValueError(f"pool must be 'overlap' (3x3 stride 2) or 'non-overlap' (2x2 stride 2), not {pool!r}")
        if columns not in (1, 2):
            raise ValueError(f"columns must be 1 or 2, not {columns!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {dropout!r}")
        if input_size < 8:
            raise ValueError(f"input_size must be at least 8, not {input_size!r}")

        # lrn_scale: the normalisation acts as it would on activations lrn_scale times larger, by the
        # identity N_alpha(s * a) = s * N_(alpha * s^2)(a), exact for the k = 1 of both cuda-convnet norms
        s2 = float(lrn_scale) ** 2

        def norm(channels: int) -> nn.Module:
            if lrn == "spatial":
                return SpatialResponseNorm(3, 5e-5 * s2, 0.75)
            if lrn == "cross":
                return CrossMapLRN(9, 1e-3 * s2, 0.75, k=1.0, alpha_over_n=True)
            return nn.Identity()

        # 3x3 stride 2 rounded up (32 -> 16 -> 8 -> 4) or 2x2 stride 2 (the same sizes)
        k, ceil = (3, True) if pool == "overlap" else (2, False)

        def later_pool(k: int, ceil: bool) -> nn.Module:  # pool2 and pool3: average in the configs
            return nn.MaxPool2d(k, 2, ceil_mode=ceil) if pools == "max" else nn.AvgPool2d(k, 2, ceil_mode=ceil)

        if dropout > 0 and not fc64:
            raise ValueError(
                "dropout: this net has no hidden fully-connected layer whose outputs could be dropped "
                "(the paper drops the outputs of hidden FC layers); use cifar_80sec"
            )
        c = width * columns
        # With ReLU, max pooling runs before the activation: relu(pool(x)) == pool(relu(x)), the
        # gradients too, bit for bit (the ReLU's derivative is 0 or 1; a test checks it), and the
        # ReLU then runs on a quarter of the values (README "Performance"). A tanh keeps the paper's
        # order: its gradients would agree only to rounding.
        first = [
            ("conv1", nn.Conv2d(in_chans, c, 5, padding=2)),
            ("act1", make_activation(activation)),
            ("pool1", nn.MaxPool2d(k, 2, ceil_mode=ceil)),
        ]
        if activation == "relu":
            first = [first[0], first[2], first[1]]
        self.features = nn.Sequential(
            OrderedDict(
                [
                    *first,
                    ("norm1", norm(c)),
                    ("conv2", nn.Conv2d(c, c, 5, padding=2, groups=columns)),
                    ("act2", make_activation(activation)),
                    ("pool2", later_pool(k, ceil)),
                    ("norm2", norm(c)),
                    ("conv3", nn.Conv2d(c, 64, 5, padding=2)),  # the columns meet here
                    ("act3", make_activation(activation)),
                    ("pool3", later_pool(k, ceil)),
                ]
            )
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, in_chans, input_size, input_size)).numel()

        head: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
        if fc64:
            head += [("fc64", nn.Linear(flat, hidden)), ("act4", make_activation(activation))]
            if dropout > 0:  # the hidden layer's outputs, not the pooled conv features
                head += [("drop", nn.Dropout(dropout))]
        head += [("fc10", nn.Linear(hidden if fc64 else flat, num_classes))]
        self.classifier = nn.Sequential(OrderedDict(head))
        self.init_weights(init, fc_std=0.1 if fc64 else 0.01)
        if hidden_bias is not None:  # AlexNet §5's bias of 1 in the hidden layers after the first
            for name in ("conv2", "conv3", "fc64"):
                layer = getattr(self.features, name, None) or getattr(self.classifier, name, None)
                if layer is not None:
                    nn.init.constant_(layer.bias, float(hidden_bias))

    def init_weights(self, scheme: str, fc_std: float) -> None:
        if scheme == "torch":
            return
        if scheme != "cuda-convnet":
            raise ValueError(f"init must be 'cuda-convnet' or 'torch', not {scheme!r}")
        for name, m in [*self.features.named_children(), *self.classifier.named_children()]:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                std = 1e-4 if name == "conv1" else 1e-2 if isinstance(m, nn.Conv2d) else fc_std
                nn.init.normal_(m.weight, 0.0, std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the output layer (flattened pool3, or fc64 after its ReLU)."""
        if isinstance(self.classifier[-2], nn.Dropout):
            return self.classifier[:-2](self.features(x))
        return self.classifier[:-1](self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model(
    "cifar_80sec", input_size=32, num_classes=10, description="cuda-convnet layers-80sec CIFAR-10 net (26% in 80 s)"
)
def cifar_80sec(
    *,
    num_classes: int = 10,
    in_chans: int = 3,
    activation: str = "relu",
    lrn: str = "none",
    pool: str = "overlap",
    dropout: float = 0.0,
    columns: int = 1,
    hidden: int = 64,
    input_size: int = 32,
    lrn_scale: float = 1.0,
    init: str = "cuda-convnet",
    width: int = 32,
    pools: str = "cuda-convnet",
    hidden_bias: float | None = None,
) -> CudaConvnetCifar:
    """cuda-convnet's layers-80sec: conv32-maxpool-conv32-avgpool-conv64-avgpool-fc64-fc10."""
    return CudaConvnetCifar(
        num_classes,
        in_chans=in_chans,
        activation=activation,
        lrn=lrn,
        fc64=True,
        hidden=hidden,
        pool=pool,
        dropout=dropout,
        columns=columns,
        input_size=input_size,
        lrn_scale=lrn_scale,
        init=init,
        width=width,
        pools=pools,
        hidden_bias=hidden_bias,
    )


@register_model(
    "cifar_18pct", input_size=32, num_classes=10, description="cuda-convnet layers-18pct CIFAR-10 net (18% in 20 min)"
)
def cifar_18pct(
    *,
    num_classes: int = 10,
    in_chans: int = 3,
    activation: str = "relu",
    lrn: str = "spatial",
    pool: str = "overlap",
    dropout: float = 0.0,
    columns: int = 1,
    input_size: int = 32,
    lrn_scale: float = 1.0,
    init: str = "cuda-convnet",
    width: int = 32,
    pools: str = "cuda-convnet",
    hidden_bias: float | None = None,
) -> CudaConvnetCifar:
    """cuda-convnet's layers-18pct: conv32-maxpool-rnorm-conv32-avgpool-rnorm-conv64-avgpool-fc10."""
    return CudaConvnetCifar(
        num_classes,
        in_chans=in_chans,
        activation=activation,
        lrn=lrn,
        fc64=False,
        pool=pool,
        dropout=dropout,
        columns=columns,
        input_size=input_size,
        lrn_scale=lrn_scale,
        init=init,
        width=width,
        pools=pools,
        hidden_bias=hidden_bias,
    )
