"""AlexNet as described in Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep
Convolutional Neural Networks", NIPS 2012 (§3, §4.2, §5).

Five convolutional and three fully connected layers; ReLU; local response normalisation after the
ReLUs of conv1 and conv2; overlapping 3x3 stride-2 max pooling after both normalisations and after
conv5; the two-column ("two GPU") layout, where conv2, conv4 and conv5 only see the maps of their
own column (``groups=2``) and conv3 and the FC layers see both; dropout 0.5 on the outputs of fc6
and fc7. 60,965,224 parameters at 1000 classes, the same as Caffe's bvlc_alexnet.

Choices where the paper is silent or inconsistent, and deviations:
- Input size. (224 - 11) / 4 + 1 is not an integer. We follow Krizhevsky's own cuda-convnet,
  which rounds the output size up: a 224x224 input is zero-padded by 3 pixels on the right and
  bottom before conv1. A 227x227 input (Caffe's crop) is used as it is. Both give 55x55x96.
- LRN constant. The paper's formula read literally (alpha = 1e-4 multiplying the plain sum of
  squares over n = 5 maps) is five times stronger than what produced its numbers: Krizhevsky's
  cuda-convnet divides the configured scale by the window (``dic['scale'] /= dic['size']`` for
  cross-map normalisation in its ``layer.py``), and Caffe's bvlc_alexnet, which reproduced the
  paper, uses alpha/n too. So the default is alpha/n, b = a / (2 + 1e-4 / 5 * sum a^2)^0.75
  (torch's ``LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2)``); ``lrn_alpha_over_n=False`` is
  the literal reading (``LocalResponseNorm(5, alpha=5e-4, ...)``).
- The two GPUs are simulated with grouped convolutions on one device. Within conv1 and conv3 a
  column's kernels see every input map, which is exactly an ungrouped convolution.
- An adaptive 6x6 average pool follows pool5. It is the identity on the paper's 224/227 inputs
  (pool5 already gives 6x6) and only lets the network run on other input sizes.
- Initialisation ("paper"): weights from N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6 and
  fc7, 0 elsewhere. "caffe" uses bias 0.1 where the paper has 1 (Caffe found 1 gave a flat loss);
  "torch" keeps PyTorch's default initialisation.

Ablation options (the paper's claims): ``activation`` ("relu" or "tanh"), ``lrn`` (on/off),
``pool`` ("overlap" = 3x3 stride 2, "non-overlap" or "nonoverlap" = 2x2 stride 2; both give the same map sizes),
``columns`` (2 grouped columns, or 1 column of the same width), ``width`` (kernel-count multiplier
of conv1-conv4), ``top_width`` (multiplier of conv5 and the FC layers), ``dropout`` (probability,
0 to disable), ``lrn_across_columns``.

§3.2's "one GPU with half the kernels" is ``columns=1, width=0.5``: conv widths 48-128-192-192-256
and FC 4096-4096 (59,798,312 parameters at 1000 classes). The paper's footnote: that net keeps
the final convolutional layer and the fully connected layers at full size, so that the two nets
have about as many parameters; hence ``top_width`` stays 1 unless asked.

Response normalisation and the columns: in cuda-convnet2's two-GPU ImageNet configuration each
column normalises its own maps (``rnorm1a``/``rnorm1b`` over 48 maps each), so with ``columns=2``
the window of 5 adjacent maps never crosses from one column's maps into the other's;
``lrn_across_columns=True`` normalises over all 96 (256) maps instead.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ._layers import POOL_KINDS, CrossMapLRN, PadToStride, make_activation
from ._registry import register_model

PAPER_WIDTHS = (96, 256, 384, 384, 256)
HIDDEN = 4096


@register_model(
    "alexnet",
    input_size=224,
    image_size=256,
    description="the 2012 paper's network exactly: 2 columns, LRN, overlapping pools",
)
class AlexNet(nn.Module):
    """AlexNet exactly as in the 2012 paper (see the module docstring for every choice)."""

    def __init__(
        self,
        num_classes: int = 1000,
        *,
        in_chans: int = 3,
        activation: str = "relu",
        lrn: bool = True,
        lrn_alpha_over_n: bool = True,
        pool: str = "overlap",
        columns: int = 2,
        width: float = 1.0,
        top_width: float = 1.0,
        dropout: float = 0.5,
        init: str = "paper",
        lrn_across_columns: bool = False,
    ) -> None:
        super().__init__()
        if columns not in (1, 2):
            raise ValueError(f"columns must be 1 or 2, not {columns!r}")
        if pool not in POOL_KINDS:  # both spellings of the non-overlapping pool, in every model
            raise ValueError(f"pool must be 'overlap' (3x3 stride 2) or 'non-overlap' (2x2 stride 2), not {pool!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {dropout!r}")
        c1, c2, c3, c4 = (int(round(c * width)) for c in PAPER_WIDTHS[:4])
        c5 = int(round(PAPER_WIDTHS[4] * top_width))
        for c in (c1, c2, c3, c4, c5):
            if c < columns or c % columns:
                raise ValueError(
                    f"width={width}, top_width={top_width} give {c} kernels, not divisible into {columns} columns"
                )
        hidden = int(round(HIDDEN * top_width))
        k, s = (3, 2) if pool == "overlap" else (2, 2)
        g = columns

        groups = 1 if lrn_across_columns else columns

        def norm() -> nn.Module:
            return (
                CrossMapLRN(5, 1e-4, 0.75, 2.0, alpha_over_n=lrn_alpha_over_n, groups=groups) if lrn else nn.Identity()
            )

        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("pad1", PadToStride(11, 4)),
                    ("conv1", nn.Conv2d(in_chans, c1, 11, stride=4)),
                    ("act1", make_activation(activation)),
                    ("norm1", norm()),
                    ("pool1", nn.MaxPool2d(k, s)),
                    ("conv2", nn.Conv2d(c1, c2, 5, padding=2, groups=g)),
                    ("act2", make_activation(activation)),
                    ("norm2", norm()),
                    ("pool2", nn.MaxPool2d(k, s)),
                    ("conv3", nn.Conv2d(c2, c3, 3, padding=1)),
                    ("act3", make_activation(activation)),
                    ("conv4", nn.Conv2d(c3, c4, 3, padding=1, groups=g)),
                    ("act4", make_activation(activation)),
                    ("conv5", nn.Conv2d(c4, c5, 3, padding=1, groups=g)),
                    ("act5", make_activation(activation)),
                    ("pool5", nn.MaxPool2d(k, s)),
                ]
            )
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            OrderedDict(
                [
                    ("fc6", nn.Linear(c5 * 6 * 6, hidden)),
                    ("act6", make_activation(activation)),
                    ("drop6", nn.Dropout(dropout)),
                    ("fc7", nn.Linear(hidden, hidden)),
                    ("act7", make_activation(activation)),
                    ("drop7", nn.Dropout(dropout)),
                    ("fc8", nn.Linear(hidden, num_classes)),
                ]
            )
        )
        self.init_weights(init)

    def init_weights(self, scheme: str = "paper") -> None:
        """§5: weights ~ N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6, fc7 and 0 elsewhere."""
        if scheme == "torch":
            return
        if scheme not in ("paper", "caffe"):
            raise ValueError(f"init must be 'paper', 'caffe' or 'torch', not {scheme!r}")
        one = 1.0 if scheme == "paper" else 0.1
        ones = {"conv2", "conv4", "conv5", "fc6", "fc7"}
        for name, m in [*self.features.named_children(), *self.classifier.named_children()]:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.01)
                if m.bias is not None:
                    nn.init.constant_(m.bias, one if name in ones else 0.0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer (fc7 after its ReLU, 4096-d): the features of the paper's Figure 4."""
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier[:-2](x)  # up to act7, before drop7 and fc8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)
