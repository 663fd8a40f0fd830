"""Layers shared by the networks: activations, the two kinds of response normalisation, padding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._rnorm import cross_map_norm, spatial_norm

# the ``pool`` option of every network: overlapping 3x3 stride-2 pools (the paper's) or 2x2 stride-2
# ones (§3.4's comparison), spelt with or without the hyphen
POOL_KINDS = ("overlap", "non-overlap", "nonoverlap")


def exporting() -> bool:
    """True while ``torch.export`` (and so ``torch.onnx.export(dynamo=True)``) traces the model."""
    is_exporting = getattr(torch.compiler, "is_exporting", None)  # torch >= 2.5
    return bool(is_exporting and is_exporting())


class ScaledTanh(nn.Module):
    """LeCun's squashing function f(a) = 1.7159 tanh(2a/3) (LeCun et al. 1998, Appendix A)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))


def make_activation(name: str) -> nn.Module:
    """``relu``, ``tanh`` or ``scaled_tanh`` (LeCun's)."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "tanh":
        return nn.Tanh()
    if name == "scaled_tanh":
        return ScaledTanh()
    raise ValueError(f"activation must be 'relu', 'tanh' or 'scaled_tanh', not {name!r}")


class CrossMapLRN(nn.Module):
    """Local response normalisation across channels, AlexNet §3.3, with the paper's literal formula

        b[i] = a[i] / (k + alpha * sum_{j = i-n/2 .. i+n/2} a[j]^2) ^ beta

    ``alpha`` multiplies the plain sum of squares (the paper's convention). ``groups`` splits the
    channels into that many equal groups normalised separately (AlexNet's two columns). Caffe and
    cuda-convnet divide alpha by n; pass ``alpha_over_n=True`` for that one. torch's
    ``LocalResponseNorm`` also divides by n, so this equals ``LocalResponseNorm(n, alpha * n, beta, k)``.
    """

    def __init__(
        self,
        size: int = 5,
        alpha: float = 1e-4,
        beta: float = 0.75,
        k: float = 2.0,
        alpha_over_n: bool = False,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k
        self.alpha_over_n, self.groups = alpha_over_n, groups
        self.impl = "auto"  # fused (see _rnorm.py); "reference" is the plain eager formula

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the coefficient of the plain sum of squares over the window (zero-padded at the ends)
        a = self.alpha / self.size if self.alpha_over_n else self.alpha
        return cross_map_norm(x, self.size, a, self.beta, self.k, impl=self.impl, groups=self.groups)

    def extra_repr(self) -> str:
        conv = "alpha/n" if self.alpha_over_n else "alpha (paper)"
        groups = f", groups={self.groups} (each column on its own)" if self.groups > 1 else ""
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, convention={conv}{groups}"


class SpatialResponseNorm(nn.Module):
    """cuda-convnet's ``rnorm``: normalisation over a size x size neighbourhood within each map,

        b = a / (1 + scale / size^2 * sum_{size x size} a^2) ^ power

    (cuda-convnet divides the scale by the number of pixels in the window; the window is
    zero-padded at the borders, which ``avg_pool2d(count_include_pad=True)`` reproduces).
    """

    def __init__(self, size: int = 3, scale: float = 5e-5, power: float = 0.75) -> None:
        super().__init__()
        if size % 2 != 1:
            raise ValueError(f"the spatial response norm's window must have an odd size, not {size}")
        self.size, self.scale, self.power = size, scale, power
        self.impl = "auto"  # fused (see _rnorm.py); "reference" is the plain eager formula

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return spatial_norm(x, self.size, self.scale / (self.size * self.size), self.power, 1.0, self.impl)

    def extra_repr(self) -> str:
        return f"size={self.size}, scale={self.scale}, power={self.power}"


class PadToStride(nn.Module):
    """Zero-pads the right and bottom so that (side - kernel) is a multiple of stride.

    This is cuda-convnet's rounding-up of a convolution's output size: a 224 input to AlexNet's
    conv1 (11x11, stride 4) gets 3 pixels on the right and bottom and gives 55x55; a 227 input
    (Caffe's crop) gets none and gives the same 55x55.
    """

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ph = (-(x.shape[-2] - self.kernel)) % self.stride
        pw = (-(x.shape[-1] - self.kernel)) % self.stride
        return F.pad(x, (0, pw, 0, ph)) if ph or pw else x

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}"
