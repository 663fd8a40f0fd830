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
from typing import Any

import torch
import triton
import triton.language as tl

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
def _cross_block(total, C, H, W, sn, sh, sw, GS, BLOCK: tl.constexpr, CHANNELS_LAST: tl.constexpr):
    """This program's elements: (mask, channel, offset of the pixel's channel 0, first channel of the group)."""
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    n, c, h, w = _coords(e, C, H, W, CHANNELS_LAST)
    return e < total, c, n * sn + h * sh + w * sw, (c // GS) * GS


@triton.jit
def _spatial_block(total, C, H, W, sn, sc, BLOCK: tl.constexpr, CHANNELS_LAST: tl.constexpr):
    """This program's elements: (mask, row, column, offset of the element's map)."""
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    n, c, h, w = _coords(e, C, H, W, CHANNELS_LAST)
    return e < total, h, w, n * sn + c * sc


@triton.jit
def _ld(ptr, offsets, mask, F64: tl.constexpr):
    """A masked load (0 outside), in the compute precision: fp64 for fp64 tensors, else fp32."""
    v = tl.load(ptr + offsets, mask=mask, other=0.0)
    return v.to(tl.float64) if F64 else v.to(tl.float32)


@triton.jit
def _cross_scale(x_ptr, base, c, m, g0, GS, sc, a, k, SIZE: tl.constexpr, BEFORE: tl.constexpr, F64: tl.constexpr):
    """d = k + a * sum of x^2 over the window of channel c (inside its group [g0, g0 + GS))."""
    acc = tl.zeros(c.shape, dtype=tl.float64 if F64 else tl.float32)
    for j in tl.static_range(SIZE):
        cj = c + (j - BEFORE)
        mj = m & (cj >= g0) & (cj < g0 + GS)
        v = _ld(x_ptr, base + cj * sc, mj, F64)
        acc += v * v
    return k + a * acc


@triton.jit
def _cross_forward(
    x_ptr,
    y_ptr,
    total,
    C,
    H,
    W,
    sn,
    sc,
    sh,
    sw,
    a,
    b,
    k,
    GS,
    SIZE: tl.constexpr,
    BEFORE: tl.constexpr,
    BLOCK: tl.constexpr,
    CHANNELS_LAST: tl.constexpr,
    F64: tl.constexpr,
):
    m, c, base, g0 = _cross_block(total, C, H, W, sn, sh, sw, GS, BLOCK, CHANNELS_LAST)
    d = _cross_scale(x_ptr, base, c, m, g0, GS, sc, a, k, SIZE, BEFORE, F64)
    x = _ld(x_ptr, base + c * sc, m, F64)
    y = x * tl.exp(-b * tl.log(d))
    tl.store(y_ptr + base + c * sc, y.to(y_ptr.dtype.element_ty), mask=m)


@triton.jit
def _cross_backward(
    x_ptr,
    g_ptr,
    dx_ptr,
    total,
    C,
    H,
    W,
    sn,
    sc,
    sh,
    sw,
    a,
    b,
    k,
    GS,
    SIZE: tl.constexpr,
    BEFORE: tl.constexpr,
    BLOCK: tl.constexpr,
    CHANNELS_LAST: tl.constexpr,
    F64: tl.constexpr,
):
    """dx_c = g_c f_c - 2ab x_c sum over the c' whose window holds c of g_c' x_c' f_c' / d_c', f = d^-b."""
    m, c, base, g0 = _cross_block(total, C, H, W, sn, sh, sw, GS, BLOCK, CHANNELS_LAST)
    AFTER: tl.constexpr = SIZE - 1 - BEFORE
    s = tl.zeros(c.shape, dtype=tl.float64 if F64 else tl.float32)
    for t in tl.static_range(SIZE):
        cp = c + (t - AFTER)  # the window of cp = c - AFTER .. c + BEFORE holds c
        mp = m & (cp >= g0) & (cp < g0 + GS)
        dp = _cross_scale(x_ptr, base, cp, mp, g0, GS, sc, a, k, SIZE, BEFORE, F64)
        xp = _ld(x_ptr, base + cp * sc, mp, F64)
        gp = _ld(g_ptr, base + cp * sc, mp, F64)
        s += gp * xp * tl.exp(-b * tl.log(dp)) / dp
    d = _cross_scale(x_ptr, base, c, m, g0, GS, sc, a, k, SIZE, BEFORE, F64)
    x = _ld(x_ptr, base + c * sc, m, F64)
    g = _ld(g_ptr, base + c * sc, m, F64)
    dx = g * tl.exp(-b * tl.log(d)) - (2.0 * a * b) * x * s
    tl.store(dx_ptr + base + c * sc, dx.to(dx_ptr.dtype.element_ty), mask=m)


@triton.jit
def _spatial_scale(x_ptr, nc, h, w, m, H, W, sh, sw, a, k, SIZE: tl.constexpr, F64: tl.constexpr):
    """d = k + a * sum of x^2 over the SIZE x SIZE window centred on (h, w), zero outside the map."""
    HALF: tl.constexpr = SIZE // 2
    acc = tl.zeros(h.shape, dtype=tl.float64 if F64 else tl.float32)
    for i in tl.static_range(SIZE):
        for j in tl.static_range(SIZE):
            hh = h + (i - HALF)
            ww = w + (j - HALF)
            mj = m & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
            v = _ld(x_ptr, nc + hh * sh + ww * sw, mj, F64)
            acc += v * v
    return k + a * acc


@triton.jit
def _spatial_forward(
    x_ptr,
    y_ptr,
    total,
    C,
    H,
    W,
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
):
    m, h, w, nc = _spatial_block(total, C, H, W, sn, sc, BLOCK, CHANNELS_LAST)
    d = _spatial_scale(x_ptr, nc, h, w, m, H, W, sh, sw, a, k, SIZE, F64)
    x = _ld(x_ptr, nc + h * sh + w * sw, m, F64)
    y = x * tl.exp(-b * tl.log(d))
    tl.store(y_ptr + nc + h * sh + w * sw, y.to(y_ptr.dtype.element_ty), mask=m)


@triton.jit
def _spatial_backward(
    x_ptr,
    g_ptr,
    dx_ptr,
    total,
    C,
    H,
    W,
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
):
    """dx = g f - 2ab x * (window sum of g x f / d): a centred window is its own transpose."""
    m, h, w, nc = _spatial_block(total, C, H, W, sn, sc, BLOCK, CHANNELS_LAST)
    HALF: tl.constexpr = SIZE // 2
    s = tl.zeros(h.shape, dtype=tl.float64 if F64 else tl.float32)
    for i in tl.static_range(SIZE):
        for j in tl.static_range(SIZE):
            hp = h + (i - HALF)
            wp = w + (j - HALF)
            mp = m & (hp >= 0) & (hp < H) & (wp >= 0) & (wp < W)
            dp = _spatial_scale(x_ptr, nc, hp, wp, mp, H, W, sh, sw, a, k, SIZE, F64)
            xp = _ld(x_ptr, nc + hp * sh + wp * sw, mp, F64)
            gp = _ld(g_ptr, nc + hp * sh + wp * sw, mp, F64)
            s += gp * xp * tl.exp(-b * tl.log(dp)) / dp
    d = _spatial_scale(x_ptr, nc, h, w, m, H, W, sh, sw, a, k, SIZE, F64)
    x = _ld(x_ptr, nc + h * sh + w * sw, m, F64)
    g = _ld(g_ptr, nc + h * sh + w * sw, m, F64)
    dx = g * tl.exp(-b * tl.log(d)) - (2.0 * a * b) * x * s
    tl.store(dx_ptr + nc + h * sh + w * sw, dx.to(dx_ptr.dtype.element_ty), mask=m)


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
            kernel[grid](*views, *_geometry(views[0]), *args, BLOCK=BLOCK, **meta)


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
