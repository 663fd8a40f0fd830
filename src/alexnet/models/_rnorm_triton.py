# mypy: disable-error-code="assignment,var-annotated"
# (the kernels are Triton's language: tuples grown in unrolled loops, tensors from tl.zeros)
"""Response normalisation as Triton kernels: the CUDA path of ``_rnorm`` (imported only when triton is).

One kernel forward and one backward for each of the two normalisations (the formulas are in
``_rnorm``'s docstring). Each program takes ``BLOCK`` consecutive elements in memory order (channels
fastest for a channels-last tensor, columns fastest for a contiguous one, so loads coalesce either
way), reads the window's neighbours from the input (they are in L1/L2: a window is a few channels or
a 3x3 patch away), computes in fp32 (fp64 for fp64 inputs) and writes once:

    forward:   read x, write y                      (bf16: 4 bytes per element)
    backward:  read x and the incoming gradient g, write dx; the scales d of the neighbours are
               recomputed from x instead of being saved (6 bytes per element)

Nothing else is saved for the backward pass than x, which autograd keeps anyway (it is the ReLU's
output). The paper's AlexNet normalises 96x55x55 + 256x27x27 = 477,024 values per image: 1.9 MB
forward and 2.9 MB backward in bf16, 4.8 MB per image in all (README "Performance"; the torch
fallback moved about 131 MB, in some 36 kernels). Groups (``lrn_across_columns=False``, each of
AlexNet's two columns normalised on its own) mask the window at the group's edges.

The kernels run on the CPU under Triton's interpreter (``TRITON_INTERPRET=1``), which is how the
tests check them against the eager formula, values and gradients, in float64.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

BLOCK = 512


@triton.jit
def _coords(e, C, H, W, CHANNELS_LAST: tl.constexpr):
    """(n, c, h, w) of the e-th element in memory order."""
    if CHANNELS_LAST:
        c = e % C
        r = e // C
        w = r % W
        r = r // W
        h = r % H
        n = r // H
    else:
        w = e % W
        r = e // W
        h = r % H
        r = r // H
        c = r % C
        n = r // C
    return n, c, h, w


@triton.jit
def _cross_elements(
    total, C: tl.constexpr, HW: tl.constexpr, GS: tl.constexpr, BLOCK: tl.constexpr, CHANNELS_LAST: tl.constexpr
):
    """This program's elements: (memory offset e, mask, channel c, first channel of c's group). The
    tensor is dense, so a neighbour channel c + j is at e + j * (1 channels-last, H x W contiguous):
    no pixel coordinates are needed, and the shape being compile-time constants, no run-time division."""
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    c = e % C if CHANNELS_LAST else (e // HW) % C
    return e, e < total, c, (c // GS) * GS


@triton.jit
def _spatial_elements(
    total, C: tl.constexpr, H: tl.constexpr, W: tl.constexpr, BLOCK: tl.constexpr, CHANNELS_LAST: tl.constexpr
):
    """This program's elements: (memory offset e, mask, row h, column w); a dense tensor, its shape
    compile-time constants (divisions by constants), a neighbour (h + i, w + j) at e + i * SH + j * SW."""
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    r = e // C if CHANNELS_LAST else e
    w = r % W
    h = (r // W) % H
    return e, e < total, h, w


# the hardware's approximate base-2 logarithm (lg2.approx: relative error under 2^-22) instead of
# libdevice's polynomial, on a GPU in fp32; Triton's interpreter has no fast_log2f, and fp64 keeps the exact one
FAST_LOG = os.environ.get("TRITON_INTERPRET") != "1"


@triton.jit
def _log2(v, FAST: tl.constexpr):
    if FAST:
        return libdevice.fast_log2f(v)
    return tl.log2(v)


@triton.jit
def _ld(ptr, offsets, mask, F64: tl.constexpr):
    """A masked load (0 outside), in the compute precision: fp64 for fp64 tensors, else fp32."""
    v = tl.load(ptr + offsets, mask=mask, other=0.0)
    return v.to(tl.float64) if F64 else v.to(tl.float32)


@triton.jit
def _cross_forward(
    x_ptr,
    y_ptr,
    total,
    C: tl.constexpr,
    H: tl.constexpr,
    W: tl.constexpr,
    sn,
    sc,
    sh,
    sw,
    a,
    b,
    k,
    GS: tl.constexpr,
    SIZE: tl.constexpr,
    BEFORE: tl.constexpr,
    BLOCK: tl.constexpr,
    CHANNELS_LAST: tl.constexpr,
    F64: tl.constexpr,
    FAST: tl.constexpr,
):
    """y_c = x_c d_c^-b, d_c = k + a * sum of x^2 over c - BEFORE .. c + SIZE - 1 - BEFORE (inside c's group)."""
    SC: tl.constexpr = 1 if CHANNELS_LAST else H * W
    e, m, c, g0 = _cross_elements(total, C, H * W, GS, BLOCK, CHANNELS_LAST)
    acc = tl.zeros(c.shape, dtype=tl.float64 if F64 else tl.float32)
    x = acc
    for i in tl.static_range(SIZE):
        j = i - BEFORE
        v = _ld(x_ptr, e + j * SC, m & (c + j >= g0) & (c + j < g0 + GS), F64)
        acc += v * v
        if j == 0:
            x = v
    y = x * tl.exp2(-b * _log2(k + a * acc, FAST))  # d^-b: base 2 maps onto the hardware's ex2 and lg2
    tl.store(y_ptr + e, y.to(y_ptr.dtype.element_ty), mask=m)


@triton.jit
def _cross_backward(
    x_ptr,
    g_ptr,
    dx_ptr,
    total,
    C: tl.constexpr,
    H: tl.constexpr,
    W: tl.constexpr,
    sn,
    sc,
    sh,
    sw,
    a,
    b,
    k,
    GS: tl.constexpr,
    SIZE: tl.constexpr,
    BEFORE: tl.constexpr,
    BLOCK: tl.constexpr,
    CHANNELS_LAST: tl.constexpr,
    F64: tl.constexpr,
    FAST: tl.constexpr,
):
    """dx_c = g_c f_c - 2ab x_c sum over the c' whose window holds c of g_c' x_c' f_c' / d_c', f = d^-b.

    Each element's neighbourhood is loaded once: x at c - (SIZE-1) .. c + (SIZE-1) (the windows of every
    c' that holds c) and g at those c' (2 SIZE - 1 + SIZE loads: 14 for AlexNet's 5), held in registers
    as tuples unrolled at compile time; each d_c' is summed from the held squares (no subtraction, so
    no cancellation in fp32), and one log per c' gives both d^-b and d^-b-1."""
    SC: tl.constexpr = 1 if CHANNELS_LAST else H * W
    AFTER: tl.constexpr = SIZE - 1 - BEFORE
    REACH: tl.constexpr = SIZE - 1
    e, m, c, g0 = _cross_elements(total, C, H * W, GS, BLOCK, CHANNELS_LAST)
    xs = ()
    sq = ()
    for i in tl.static_range(2 * SIZE - 1):  # x at c + i - REACH, 0 outside the group
        j = i - REACH
        v = _ld(x_ptr, e + j * SC, m & (c + j >= g0) & (c + j < g0 + GS), F64)
        xs = xs + (v,)
        sq = sq + (v * v,)
    s = tl.zeros(c.shape, dtype=tl.float64 if F64 else tl.float32)
    dx = s
    for t in tl.static_range(SIZE):  # c' = c + t - AFTER: its window is xs[t .. t + SIZE - 1]
        j = t - AFTER
        gp = _ld(g_ptr, e + j * SC, m & (c + j >= g0) & (c + j < g0 + GS), F64)
        acc = sq[t]
        for i in tl.static_range(1, SIZE):
            acc += sq[t + i]
        log_d = _log2(k + a * acc, FAST)  # base 2: the hardware's lg2 and ex2, no library polynomials
        s += gp * xs[t + BEFORE] * tl.exp2(-(b + 1.0) * log_d)
        if j == 0:  # c' = c: the element's own scale
            dx = gp * tl.exp2(-b * log_d)
    dx = dx - (2.0 * a * b) * xs[REACH] * s
    tl.store(dx_ptr + e, dx.to(dx_ptr.dtype.element_ty), mask=m)


@triton.jit
def _spatial_forward(
    x_ptr,
    y_ptr,
    total,
    C: tl.constexpr,
    H: tl.constexpr,
    W: tl.constexpr,
    sn,
    sc,
    sh,
    sw,
    a,
    b,
    k,
    SIZE: tl.constexpr,
    BLOCK: tl.constexpr,
    CHANNELS_LAST: tl.constexpr,
    F64: tl.constexpr,
    FAST: tl.constexpr,
):
    """y = x d^-b, d = k + a * sum of x^2 over the SIZE x SIZE window centred on (h, w), 0 outside the map."""
    SW: tl.constexpr = C if CHANNELS_LAST else 1
    SH: tl.constexpr = W * SW
    HALF: tl.constexpr = SIZE // 2
    e, m, h, w = _spatial_elements(total, C, H, W, BLOCK, CHANNELS_LAST)
    acc = tl.zeros(h.shape, dtype=tl.float64 if F64 else tl.float32)
    x = acc
    for i in tl.static_range(SIZE):
        for j in tl.static_range(SIZE):
            di = i - HALF
            dj = j - HALF
            inside = m & (h + di >= 0) & (h + di < H) & (w + dj >= 0) & (w + dj < W)
            v = _ld(x_ptr, e + di * SH + dj * SW, inside, F64)
            acc += v * v
            if di == 0 and dj == 0:
                x = v
    y = x * tl.exp2(-b * _log2(k + a * acc, FAST))
    tl.store(y_ptr + e, y.to(y_ptr.dtype.element_ty), mask=m)


@triton.jit
def _spatial_backward(
    x_ptr,
    g_ptr,
    dx_ptr,
    total,
    C: tl.constexpr,
    H: tl.constexpr,
    W: tl.constexpr,
    sn,
    sc,
    sh,
    sw,
    a,
    b,
    k,
    SIZE: tl.constexpr,
    BLOCK: tl.constexpr,
    CHANNELS_LAST: tl.constexpr,
    F64: tl.constexpr,
    FAST: tl.constexpr,
):
    """dx = g f - 2ab x * (window sum of g x f / d): a centred window is its own transpose. The
    (2 SIZE - 1)^2 patch of x around the element and g over its window are loaded once (34 loads for
    3x3) and held as tuples; each neighbour's d is summed from the held squares."""
    SW: tl.constexpr = C if CHANNELS_LAST else 1
    SH: tl.constexpr = W * SW
    HALF: tl.constexpr = SIZE // 2
    REACH: tl.constexpr = SIZE - 1
    SPAN: tl.constexpr = 2 * SIZE - 1
    e, m, h, w = _spatial_elements(total, C, H, W, BLOCK, CHANNELS_LAST)
    xs = ()
    sq = ()
    for i in tl.static_range(SPAN):  # row h + i - REACH, column w + j - REACH, row-major
        for j in tl.static_range(SPAN):
            di = i - REACH
            dj = j - REACH
            inside = m & (h + di >= 0) & (h + di < H) & (w + dj >= 0) & (w + dj < W)
            v = _ld(x_ptr, e + di * SH + dj * SW, inside, F64)
            xs = xs + (v,)
            sq = sq + (v * v,)
    s = tl.zeros(h.shape, dtype=tl.float64 if F64 else tl.float32)
    dx = s
    for u in tl.static_range(SIZE):  # the neighbour p' = (h + u - HALF, w + v - HALF)
        for q in tl.static_range(SIZE):
            du = u - HALF
            dv = q - HALF
            inside = m & (h + du >= 0) & (h + du < H) & (w + dv >= 0) & (w + dv < W)
            gp = _ld(g_ptr, e + du * SH + dv * SW, inside, F64)
            acc = tl.zeros(h.shape, dtype=tl.float64 if F64 else tl.float32)
            for i in tl.static_range(SIZE):  # p''s window in the patch: rows u .. u + SIZE - 1, columns q ..
                for j in tl.static_range(SIZE):
                    acc += sq[(u + i) * SPAN + q + j]
            log_d = _log2(k + a * acc, FAST)
            s += gp * xs[(u + HALF) * SPAN + q + HALF] * tl.exp2(-(b + 1.0) * log_d)
            if du == 0 and dv == 0:
                dx = gp * tl.exp2(-b * log_d)
    dx = dx - (2.0 * a * b) * xs[REACH * SPAN + REACH] * s
    tl.store(dx_ptr + e, dx.to(dx_ptr.dtype.element_ty), mask=m)


# ---------------------------------------------------------------------------------- launching


def _layout(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``x`` dense in one of the two layouts (copied only if it is neither), and whether channels-last."""
    if x.is_contiguous():
        return x, False
    if x.is_contiguous(memory_format=torch.channels_last):
        return x, True
    return x.contiguous(), False


def _like(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``t`` in the layout of the saved input (the incoming gradient may come in the other one)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return t if t.is_contiguous(memory_format=fmt) else t.contiguous(memory_format=fmt)


def _geometry(x: torch.Tensor) -> tuple[Any, ...]:
    n, c, h, w = x.shape
    return (x.numel(), c, h, w, *x.stride())


MAX_LAUNCH = 2**31 - 1  # elements one launch may index: the kernels' offsets are int32


def device_guard(x: torch.Tensor) -> Any:
    """Launch on ``x``'s GPU, whichever is current (``--device cuda:1`` from a thread that never made it
    current: evaluate, predict, serve, bench); nothing to do on the CPU (the interpreter)."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


def chunks(x: torch.Tensor) -> list[slice]:
    """Slices along N (the outermost dimension in both layouts) of at most ``MAX_LAUNCH`` elements each,
    so that no launch's int32 offsets can wrap (a tensor of 2^31 elements or more, e.g. a large ten-crop
    batch, is launched in parts: each part's offsets start at 0 from its own data pointer)."""
    per_image = max(1, x[0].numel()) if len(x) else 1
    if per_image > MAX_LAUNCH:
        raise ValueError(f"one image of {per_image:,} values is over the kernels' {MAX_LAUNCH:,}-element limit")
    step = max(1, MAX_LAUNCH // per_image)
    return [slice(i, min(i + step, len(x))) for i in range(0, max(len(x), 1), step)]


def _launch(kernel: Any, tensors: tuple[torch.Tensor, ...], *args: Any, **meta: Any) -> None:
    """``kernel`` over ``tensors`` (all of x's shape and layout), part by part (``chunks``), on x's device."""
    x = tensors[0]
    with device_guard(x):
        for part in chunks(x):
            views = [t[part] for t in tensors]
            grid = (triton.cdiv(views[0].numel(), BLOCK),)
            fast = FAST_LOG and views[0].dtype != torch.float64
            kernel[grid](*views, *_geometry(views[0]), *args, BLOCK=BLOCK, FAST=fast, **meta)


class CrossMapTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, size: int, a: float, b: float, k: float, groups: int) -> torch.Tensor:
        x, cl = _layout(x)
        y = torch.empty_like(x)
        gs = x.shape[1] // groups
        f64 = x.dtype == torch.float64
        _launch(_cross_forward, (x, y), a, b, k, gs, SIZE=size, BEFORE=size // 2, CHANNELS_LAST=cl, F64=f64)
        ctx.save_for_backward(x)
        ctx.params = (size, a, b, k, gs, cl)
        return y

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        size, a, b, k, gs, cl = ctx.params
        g = _like(g, cl)
        dx = torch.empty_like(x)
        f64 = x.dtype == torch.float64
        _launch(_cross_backward, (x, g, dx), a, b, k, gs, SIZE=size, BEFORE=size // 2, CHANNELS_LAST=cl, F64=f64)
        return dx, None, None, None, None, None


class SpatialTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, size: int, a: float, b: float, k: float) -> torch.Tensor:
        if size % 2 == 0:
            raise ValueError(f"the spatial normalisation's window is centred: an odd size, not {size}")
        x, cl = _layout(x)
        y = torch.empty_like(x)
        _launch(_spatial_forward, (x, y), a, b, k, SIZE=size, CHANNELS_LAST=cl, F64=x.dtype == torch.float64)
        ctx.save_for_backward(x)
        ctx.params = (size, a, b, k, cl)
        return y

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        size, a, b, k, cl = ctx.params
        g = _like(g, cl)
        dx = torch.empty_like(x)
        _launch(_spatial_backward, (x, g, dx), a, b, k, SIZE=size, CHANNELS_LAST=cl, F64=x.dtype == torch.float64)
        return dx, None, None, None, None


def bytes_moved(x_shape: tuple[int, ...], element_bytes: int) -> dict[str, int]:
    """The kernels' memory traffic for an input of ``x_shape`` (each element read or written once
    from DRAM; the neighbours of a window come from the caches): forward x in, y out; backward x and
    g in, dx out."""
    n = 1
    for s in x_shape:
        n *= s
    return {"forward": 2 * n * element_bytes, "backward": 3 * n * element_bytes}
