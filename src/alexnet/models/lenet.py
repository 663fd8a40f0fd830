"""LeNet-5: LeCun, Bottou, Bengio & Haffner, "Gradient-Based Learning Applied to Document
Recognition", Proc. IEEE 1998 (§II.B, Table I, Appendix A).

``variant="original"`` is the 1998 network:
- 32x32 input (MNIST's 28x28 digits padded by 2).
- C1: 6 maps, 5x5 -> 28x28. S2: 2x2 subsampling whose four inputs are summed, multiplied by a
  trainable coefficient and added to a trainable bias, one pair per map. C3: 16 maps, 5x5 ->
  10x10, connected to subsets of S2's maps by Table I (maps 0-5 see 3 adjacent maps, 6-11 see 4
  adjacent, 12-14 see {0,1,3,4}, {1,2,4,5}, {0,2,3,5}, 15 sees all six). S4 as S2. C5: 120 maps
  5x5 -> 1x1. F6: 84 units. Every layer up to F6 is squashed by 1.7159 tanh(2a/3).
- Initialisation: weights uniform in +-2.4 / fan-in (Appendix A).
- 60,000 trainable parameters before the output layer: C1 156, S2 12, C3 1516, S4 32,
  C5 48120, F6 10164.
- Output (``output="rbf"``): ten Euclidean RBF units whose parameter vectors are fixed +-1 codes,
  the 7x12 bitmaps of the digits (drawn here after the paper's Figure 3; not trained, so not
  counted). Unit i outputs the squared distance y_i = ||f6 - w_i||^2 and we use -y_i as the class
  logit under the usual cross-entropy. That is the paper's discriminative MAP criterion (eq. 9)
  without its constant "rubbish class" term j. For a number of classes other than 10, the codes
  are random +-1 vectors drawn from a fixed seed. ``output="linear"`` puts a trainable linear layer
  there instead (+850 parameters at 10 classes).
- Training in 1998 used stochastic diagonal Levenberg-Marquardt; our recipes use SGD.

``c3="full"`` (every C3 map sees all six S2 maps), ``subsampling="max"`` (2x2 max pooling in place of
the trainable S2/S4 and their squashing) and ``output="linear"`` change one part of the original
at a time (the 1998 network's parts, ``alexnet experiment lenet5``).

``variant="modern"`` is the common simplification: a full C3, max pooling, ReLU and a linear
output (61,706 parameters at 10 classes).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ._layers import ScaledTanh, exporting
from ._registry import register_model

# Table I of the 1998 paper: which S2 maps each C3 map is connected to.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    *((i % 6, (i + 1) % 6, (i + 2) % 6) for i in range(6)),
    *((i % 6, (i + 1) % 6, (i + 2) % 6, (i + 3) % 6) for i in range(6)),
    (0, 1, 3, 4),
    (1, 2, 4, 5),
    (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)

# The +-1 RBF codes: each digit drawn on a 7-wide, 12-high bitmap ('#' = +1, '.' = -1).
_DIGITS = """
..###.. ...#... .####.. .####.. ....#.. ######. ..###.. ####### .#####. .#####.
.#...#. ..##... #....#. #....#. ...##.. #...... .#..... ......# #.....# #.....#
#.....# .#.#... ......# ......# ..#.#.. #...... #...... .....#. #.....# #.....#
#.....# ...#... ......# ......# .#..#.. #...... #...... ....#.. #.....# #.....#
#.....# ...#... .....#. ....##. #...#.. #####.. #.####. ....#.. .#####. #.....#
#.....# ...#... ....#.. ......# #...#.. .....#. ##....# ...#... #.....# .######
#.....# ...#... ...#... ......# #######. ......# #.....# ...#... #.....# ......#
#.....# ...#... ..#.... ......# ....#.. ......# #.....# ..#.... #.....# ......#
#.....# ...#... .#..... ......# ....#.. ......# #.....# ..#.... #.....# ......#
.#...#. ...#... #...... #....#. ....#.. #....#. .#...#. ..#.... #.....# .....#.
..###.. .#####. ####### .####.. ....#.. .####.. ..###.. ..#.... .#####. .####..
....... ....... ....... ....... ....... ....... ....... ....... ....... .......
"""


def digit_codes() -> torch.Tensor:
    """The ten 84-d (12 x 7) +-1 codes of the digits 0-9, shape (10, 84)."""
    rows = [line.split() for line in _DIGITS.strip("\n").splitlines()]
    codes = torch.tensor([[[1.0 if ch == "#" else -1.0 for ch in row[d][:7]] for row in rows] for d in range(10)])
    return codes.reshape(10, 84)


class Subsampling(nn.Module):
    """LeNet's S layers: sum of each 2x2 block times a trainable per-map coefficient, plus a bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.avg_pool2d(x, 2) * 4.0  # sum of the 2x2 block
        return s * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class SparseConv(nn.Module):
    """A convolution with a fixed input-output connection table (LeNet-5's C3).

    Only the connected kernels are parameters (1,500 weights + 16 biases for C3, as in the paper);
    they are scattered into a dense (out, in, k, k) kernel at each forward pass.
    """

    index: torch.Tensor  # buffers, declared for the type checker (nn.Module types attributes as Tensor | Module)
    fan_in: torch.Tensor

    def __init__(self, in_ch: int, out_ch: int, kernel: int, table: tuple[tuple[int, ...], ...]) -> None:
        super().__init__()
        self.in_ch, self.out_ch, self.kernel = in_ch, out_ch, kernel
        mask = torch.zeros(out_ch, in_ch, kernel, kernel, dtype=torch.bool)
        for o, ins in enumerate(table):
            mask[o, list(ins)] = True
        self.register_buffer("index", mask.flatten().nonzero().squeeze(1), persistent=False)
        self.weight = nn.Parameter(torch.empty(int(mask.sum())))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        # Fan-in of each stored weight's output map; the stored weights are ordered by output map.
        fan = torch.tensor([len(ins) * kernel * kernel for ins in table])
        self.register_buffer("fan_in", fan.repeat_interleave(fan).float(), persistent=False)

    def dense_weight(self) -> torch.Tensor:
        w = self.weight.new_zeros(self.out_ch * self.in_ch * self.kernel * self.kernel)
        return w.scatter(0, self.index, self.weight).view(self.out_ch, self.in_ch, self.kernel, self.kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.dense_weight(), self.bias)


class RBFOutput(nn.Module):
    """Euclidean RBF units with fixed codes; returns -||x - code_i||^2 as logits (shape N, classes)."""

    codes: torch.Tensor  # a buffer

    def __init__(self, num_classes: int, in_features: int = 84) -> None:
        super().__init__()
        if num_classes == 10 and in_features == 84:
            codes = digit_codes()
        else:
            g = torch.Generator().manual_seed(1998)
            codes = torch.randint(0, 2, (num_classes, in_features), generator=g).float() * 2 - 1
        self.register_buffer("codes", codes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if exporting():  # ONNX has no cdist: the same distances written out (they agree to ~1e-6)
            return -(x.float()[:, None, :] - self.codes).pow(2).sum(-1)
        return -torch.cdist(x.float(), self.codes).pow(2)


@register_model(
    "lenet5", input_size=32, in_chans=1, num_classes=10, description="LeNet-5 (LeCun et al. 1998), original or modern"
)
class LeNet5(nn.Module):
    """LeNet-5 as in LeCun et al. 1998 (``variant="original"``) or its modern simplification."""

    def __init__(
        self,
        num_classes: int = 10,
        *,
        in_chans: int = 1,
        variant: str = "original",
        output: str | None = None,
        c3: str | None = None,
        subsampling: str | None = None,
    ) -> None:
        super().__init__()
        if variant not in ("original", "modern"):
            raise ValueError(f"variant must be 'original' or 'modern', not {variant!r}")
        output = output or ("rbf" if variant == "original" else "linear")
        if output not in ("rbf", "linear"):
            raise ValueError(f"output must be 'rbf' or 'linear', not {output!r}")
        c3 = c3 or ("table" if variant == "original" else "full")
        subsampling = subsampling or ("trainable" if variant == "original" else "max")
        if c3 not in ("table", "full"):
            raise ValueError(f"c3 must be 'table' (Table I) or 'full', not {c3!r}")
        if subsampling not in ("trainable", "max"):
            raise ValueError(f"subsampling must be 'trainable' (the paper's S2/S4) or 'max', not {subsampling!r}")
        if variant == "modern" and (c3, subsampling) != ("full", "max"):
            raise ValueError(
                "c3 and subsampling: the modern variant is full C3 and max pooling; change the "
                "original's parts one at a time instead (variant='original', c3='full', ...)"
            )
        self.variant = variant
        if variant == "original":  # c3 and subsampling change one part of it at a time (the parts' ablation)

            def sub(maps: int, n: int) -> list[tuple[str, nn.Module]]:
                if subsampling == "max":
                    return [(f"s{n}", nn.MaxPool2d(2))]
                return [(f"s{n}", Subsampling(maps)), (f"act{n}", ScaledTanh())]

            layers = [
                ("c1", nn.Conv2d(in_chans, 6, 5)),
                ("act1", ScaledTanh()),
                *sub(6, 2),
                ("c3", SparseConv(6, 16, 5, C3_TABLE) if c3 == "table" else nn.Conv2d(6, 16, 5)),
                ("act3", ScaledTanh()),
                *sub(16, 4),
                ("c5", nn.Conv2d(16, 120, 5)),
                ("act5", ScaledTanh()),
            ]
            act6: nn.Module = ScaledTanh()
        else:
            layers = [
                ("c1", nn.Conv2d(in_chans, 6, 5)),
                ("act1", nn.ReLU(inplace=True)),
                ("s2", nn.MaxPool2d(2)),
                ("c3", nn.Conv2d(6, 16, 5)),
                ("act3", nn.ReLU(inplace=True)),
                ("s4", nn.MaxPool2d(2)),
                ("c5", nn.Conv2d(16, 120, 5)),
                ("act5", nn.ReLU(inplace=True)),
            ]
            act6 = nn.ReLU(inplace=True)
        self.features = nn.Sequential(OrderedDict(layers))
        self.classifier = nn.Sequential(
            OrderedDict(
                [
                    ("flatten", nn.Flatten()),
                    ("f6", nn.Linear(120, 84)),
                    ("act6", act6),
                    ("output", RBFOutput(num_classes) if output == "rbf" else nn.Linear(84, num_classes)),
                ]
            )
        )
        if variant == "original":
            self._init_lecun()

    def _init_lecun(self) -> None:
        """Appendix A: weights uniform in [-2.4/F, 2.4/F], F the fan-in of the unit."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                bound = 2.4 / (m.weight[0].numel())
                nn.init.uniform_(m.weight, -bound, bound)
                if m.bias is not None:
                    nn.init.uniform_(m.bias, -bound, bound)
            elif isinstance(m, SparseConv):
                with torch.no_grad():
                    bounds = 2.4 / m.fan_in
                    m.weight.copy_((torch.rand_like(m.weight) * 2 - 1) * bounds)
                    nn.init.zeros_(m.bias)
            elif isinstance(m, Subsampling):
                # fan-in of an S unit is 4 (the 2x2 block): coefficient in +-2.4/4 would often be near
                # zero and kill the signal; like most reimplementations we start at 1/4 (a mean) and 0.
                nn.init.constant_(m.weight, 0.25)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """F6's output (84-d), the input of the output layer."""
        return self.classifier[:-1](self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
