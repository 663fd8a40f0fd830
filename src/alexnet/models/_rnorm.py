"""Response normalisation, fused: the cross-map LRN of AlexNet §3.3 and cuda-convnet's spatial rnorm.

Four implementations of the same two functions, chosen per call:

- **native** (CPU): ``csrc/rnorm.cpp``, one pass over memory forward and one backward, compiled on
  first use with the C++ compiler torch's extensions use (``torch.utils.cpp_extension``) and cached
  (``$TORCH_EXTENSIONS_DIR``, else ``~/.cache/torch_extensions``). On the 2-core dev machine it
  makes the paper's AlexNet training step 3x faster in bf16 (README "Performance").
- **triton** (CUDA, by default where triton is installed, as it is with torch's CUDA builds):
  ``_rnorm_triton.py``, one kernel forward and one backward that reads x and the incoming gradient
  once, in either memory layout; tested on the CPU under Triton's interpreter.
- **torch** (``torch.compile``, GPUs without triton, and the CPU when no compiler is at hand): a custom autograd
  Function with the analytic gradient. It saves the input and the scale ``d`` (not the window sums)
  and needs three window sums in all; under ``torch.compile`` inductor fuses it into a few kernels.
- **reference**: the straightforward eager formula the project started with, kept for the tests
  (the other two must match it, and their gradients pass ``gradcheck`` in float64).

The formulas (``a`` is the coefficient of the plain window sum; the modules convert the papers'
conventions into it)::

    cross-map:  d_c = k + a * sum_{j = c - n//2 .. c + n - 1 - n//2} x_j^2      y_c = x_c * d_c^-b
    spatial:    d   = k + a * sum_{size x size window, zero padded} x^2          y   = x * d^-b
    gradient:   dx  = g * d^-b - 2 a b x * W^T(g * y / d)

``ALEXNET_NATIVE=0`` turns the compiled kernel off (``=1`` makes a failure to build it an error);
``ALEXNET_TRITON=0`` the Triton kernels.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import sys
import threading
import types
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..settings import native_kernel, triton_allowed

_native_lock = threading.Lock()
_triton_module: Any = None
_triton_state = "untried"  # untried | loaded | unavailable
_native_module: Any = None
_native_state = "untried"  # untried | loaded | unavailable


def _cpu_tag() -> str:
    """A short hash of the CPU's feature flags: the kernel is built with -march=native, so a cache
    shared between machines (a network home) must not hand one CPU's build to another."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return hashlib.sha1(f"{platform.machine()}:{flags}".encode()).hexdigest()[:8]


def native() -> Any:
    """The compiled CPU kernels, built on first use; None where they cannot be built."""
    global _native_module, _native_state
    if _native_state != "untried":
        return _native_module
    with _native_lock:
        if _native_state != "untried":
            return _native_module
        setting = native_kernel()
        if setting == "off":
            _native_state = "unavailable"
            return None
        src = Path(__file__).with_name("csrc") / "rnorm.cpp"
        try:
            # torch's extension builder logs a warning about CUDA at import; this build is CPU-only
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
            from torch.utils.cpp_extension import load

            # the `ninja` package installs its binary beside the interpreter, which may not be on PATH
            bindir = os.path.dirname(sys.executable)
            if os.path.exists(os.path.join(bindir, "ninja")) and bindir not in os.environ.get("PATH", "").split(
                os.pathsep
            ):
                os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
            digest = hashlib.sha1(src.read_bytes()).hexdigest()[:8]
            flags = ["-O3", "-fopenmp", "-fno-math-errno"]  # no errno: sqrt vectorises
            if sys.platform == "linux" and os.uname().machine in ("x86_64", "aarch64"):
                flags.append("-march=native" if os.uname().machine == "x86_64" else "-mcpu=native")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _native_module = load(
                    name=f"alexnet_rnorm_{digest}_{_cpu_tag()}",
                    sources=[str(src)],
                    extra_cflags=flags,
                    extra_ldflags=["-fopenmp"],
                    verbose=False,
                )
            _native_state = "loaded"
        except Exception as e:  # no compiler, no headers, no ninja: the torch path still works
            if setting == "on":
                raise RuntimeError(f"ALEXNET_NATIVE=1 but the fused response-norm kernel did not build: {e}") from e
            print(
                f"warning: the fused response-norm kernel could not be built ({type(e).__name__}: "
                f"{str(e).strip().splitlines()[-1][:160] if str(e).strip() else ''}); using the slower "
                "PyTorch version (needs a C++ compiler and ninja; ALEXNET_NATIVE=0 silences this)",
                file=sys.stderr,
            )
            _native_module, _native_state = None, "unavailable"
        return _native_module


def triton_kernels() -> Any:
    """The Triton kernels' module, or None where triton cannot be imported (or ALEXNET_TRITON=0)."""
    global _triton_module, _triton_state
    if _triton_state == "untried":
        _triton_state = "unavailable"
        if triton_allowed():
            try:
                from ._rnorm_triton import CrossMapTriton, SpatialTriton  # optional: triton

                _triton_module = types.SimpleNamespace(CrossMapTriton=CrossMapTriton, SpatialTriton=SpatialTriton)
                _triton_state = "loaded"
            except ImportError:
                pass
    return _triton_module


def choose_impl(device_type: str, dim: int, compiling: bool, has_triton: Any, has_native: Any) -> str:
    """The implementation "auto" means for a tensor: Triton on CUDA, the compiled kernel on the CPU,
    each where it can be had; the torch Function under ``torch.compile`` (inductor fuses it itself)
    and everywhere else. ``has_triton``/``has_native`` are called only when they matter."""
    if dim != 4 or compiling:
        return "torch"
    if device_type == "cuda" and has_triton():
        return "triton"
    if device_type == "cpu" and has_native():
        return "native"
    return "torch"


def _auto(x: torch.Tensor) -> str:
    return choose_impl(
        x.device.type,
        x.dim(),
        torch.compiler.is_compiling(),
        lambda: triton_kernels() is not None,
        lambda: native() is not None,
    )


def _inverse_power(d: torch.Tensor, power: float) -> torch.Tensor:
    """d ** -power; 0.75 as rsqrt * sqrt(rsqrt), about 4x cheaper than pow() on the CPU."""
    if power == 0.75:
        r = torch.rsqrt(d)
        return r * torch.sqrt(r)
    return d.pow(-power)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------------------------- window sums


def _channel_window_sum(t: torch.Tensor, before: int, after: int, groups: int = 1) -> torch.Tensor:
    """sum_{j = c - before .. c + after} t[:, j] for every channel c, zero outside (N, C, H, W);
    with ``groups``, zero outside c's group of C / groups channels."""
    size = before + after + 1
    n, c, h, w = t.shape
    grouped = t.reshape(n * groups, 1, c // groups, h, w)
    padded = F.pad(grouped, (0, 0, 0, 0, before, after))  # N * G, 1, C / G + size - 1, H, W
    return (F.avg_pool3d(padded, (size, 1, 1), stride=1) * size).reshape(n, c, h, w)


def _spatial_window_sum(t: torch.Tensor, size: int) -> torch.Tensor:
    return F.avg_pool2d(t, size, stride=1, padding=size // 2, count_include_pad=True) * (size * size)


# ---------------------------------------------------------------------------------- autograd functions


class _CrossMapTorch(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, size: int, a: float, b: float, k: float, groups: int) -> torch.Tensor:
        xf = x.to(_compute_dtype(x))
        d = k + a * _channel_window_sum(xf * xf, size // 2, size - 1 - size // 2, groups)
        ctx.save_for_backward(x, d)
        ctx.params = (size, a, b, groups)
        return (xf * _inverse_power(d, b)).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, d = ctx.saved_tensors
        size, a, b, groups = ctx.params
        xf, gf = x.to(d.dtype), g.to(d.dtype)
        f = _inverse_power(d, b)
        u = gf * xf * f / d
        # the transposed window: channel j receives from the c whose window holds it
        s = _channel_window_sum(u, size - 1 - size // 2, size // 2, groups)
        return (gf * f - (2 * a * b) * xf * s).to(x.dtype), None, None, None, None, None


class _SpatialTorch(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, size: int, a: float, b: float, k: float) -> torch.Tensor:
        xf = x.to(_compute_dtype(x))
        d = k + a * _spatial_window_sum(xf * xf, size)
        ctx.save_for_backward(x, d)
        ctx.params = (size, a, b)
        return (xf * _inverse_power(d, b)).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, d = ctx.saved_tensors
        size, a, b = ctx.params
        xf, gf = x.to(d.dtype), g.to(d.dtype)
        f = _inverse_power(d, b)
        s = _spatial_window_sum(gf * xf * f / d, size)  # a centred window is its own transpose
        return (gf * f - (2 * a * b) * xf * s).to(x.dtype), None, None, None, None


class _CrossMapNative(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, size: int, a: float, b: float, k: float, groups: int) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.params = (size, a, b, k, groups)
        return native().cross_forward(x, size, a, b, k, groups)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        return native().cross_backward(x, g, *ctx.params), None, None, None, None, None


class _SpatialNative(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, size: int, a: float, b: float, k: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.params = (size, a, b, k)
        return native().spatial_forward(x, size, a, b, k)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        return native().spatial_backward(x, g, *ctx.params), None, None, None, None


# ---------------------------------------------------------------------------------- entry points


def cross_map_norm(
    x: torch.Tensor, size: int, a: float, beta: float, k: float, impl: str = "auto", groups: int = 1
) -> torch.Tensor:
    """Cross-map LRN of an (N, C, H, W) tensor: ``x * (k + a * window sum of x^2 over size maps)^-beta``;
    with ``groups``, each of that many equal groups of channels is normalised on its own.

    ``impl``: "auto" (Triton on CUDA, native on the CPU, where each can be had; else torch), "triton",
    "native", "torch" or "reference".
    """
    if x.shape[1] % groups:
        raise ValueError(f"LRN: {x.shape[1]} channels do not split into {groups} groups")
    if impl == "reference":
        return cross_map_norm_reference(x, size, a, beta, k, groups)
    impl = _auto(x) if impl == "auto" else impl
    if impl == "triton":
        return triton_kernels().CrossMapTriton.apply(x, size, float(a), float(beta), float(k), groups)
    if impl == "native":
        return _CrossMapNative.apply(x, size, float(a), float(beta), float(k), groups)
    return _CrossMapTorch.apply(x, size, float(a), float(beta), float(k), groups)


def spatial_norm(x: torch.Tensor, size: int, a: float, beta: float, k: float, impl: str = "auto") -> torch.Tensor:
    """Spatial response norm: ``x * (k + a * sum of x^2 over a size x size window in the map)^-beta``."""
    if size % 2 != 1:
        raise ValueError(f"spatial response norm: the window size must be odd, not {size}")
    if impl == "reference":
        return spatial_norm_reference(x, size, a, beta, k)
    impl = _auto(x) if impl == "auto" else impl
    if impl == "triton":
        return triton_kernels().SpatialTriton.apply(x, size, float(a), float(beta), float(k))
    if impl == "native":
        return _SpatialNative.apply(x, size, float(a), float(beta), float(k))
    return _SpatialTorch.apply(x, size, float(a), float(beta), float(k))


def cross_map_norm_reference(
    x: torch.Tensor, size: int, a: float, beta: float, k: float, groups: int = 1
) -> torch.Tensor:
    """The eager formula (square, pad, 3-D average pool, power, multiply), autograd's gradient."""
    if groups > 1:
        return torch.cat([cross_map_norm_reference(part, size, a, beta, k) for part in x.chunk(groups, 1)], 1)
    sq = (x * x).unsqueeze(1)
    half = size // 2
    sq = F.pad(sq, (0, 0, 0, 0, half, size - 1 - half))
    mean = F.avg_pool3d(sq, (size, 1, 1), stride=1).squeeze(1)
    return x * _inverse_power(k + (a * size) * mean, beta)


def spatial_norm_reference(x: torch.Tensor, size: int, a: float, beta: float, k: float) -> torch.Tensor:
    mean = F.avg_pool2d(x * x, size, stride=1, padding=size // 2, count_include_pad=True)
    return x * _inverse_power(k + (a * size * size) * mean, beta)
