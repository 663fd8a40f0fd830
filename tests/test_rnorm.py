"""The fused response normalisations (models/_rnorm.py) against the plain eager formula: outputs,
analytic gradients (gradcheck in float64), both memory layouts, bf16, and the fallback without the
compiled kernel."""

from __future__ import annotations

import pytest
import torch

from alexnet.models import _rnorm as R
from alexnet.models._layers import CrossMapLRN, SpatialResponseNorm

IMPLS = ["native", "torch"]
CROSS = [(5, 1e-4 * 50, 0.75, 2.0), (9, 1e-3 / 9 * 40, 0.75, 1.0), (4, 0.05, 0.6, 1.0)]  # the nets' and odd ones
SPATIAL = [(3, 5e-5 / 9 * 500, 0.75, 1.0), (5, 0.01, 0.6, 1.0)]


@pytest.fixture(scope="module", autouse=True)
def _built() -> None:
    if R.native() is None:
        pytest.skip("the fused kernel did not build here (no C++ compiler?)")


def _inputs(dtype: torch.dtype, channels_last: bool, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(2, 7, 5, 6, generator=g, dtype=torch.float64) * 10).to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


CASES = [(R.cross_map_norm, R.cross_map_norm_reference, p) for p in CROSS] + [
    (R.spatial_norm, R.spatial_norm_reference, p) for p in SPATIAL
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("fn,reference,params", CASES, ids=[f"{c[0].__name__}-{c[2][0]}" for c in CASES])
def test_matches_the_reference_and_passes_gradcheck(impl: str, channels_last: bool, fn, reference, params) -> None:
    x = _inputs(torch.float64, channels_last).requires_grad_()
    ref = reference(x, *params)
    out = fn(x, *params, impl=impl)
    assert torch.allclose(out, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(ref)
    (gr,) = torch.autograd.grad(ref, x, g)
    (go,) = torch.autograd.grad(out, x, g)
    assert torch.allclose(go, gr, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: fn(t, *params, impl=impl), (x,))


def test_grouped_cross_map_matches_the_reference_per_group() -> None:
    x = _inputs(torch.float64, True).repeat(1, 2, 1, 1).requires_grad_()  # 14 channels, 2 groups of 7
    for impl in IMPLS:
        out = R.cross_map_norm(x, 5, 0.005, 0.75, 2.0, impl=impl, groups=2)
        ref = R.cross_map_norm_reference(x, 5, 0.005, 0.75, 2.0, groups=2)
        assert torch.allclose(out, ref, rtol=1e-12, atol=1e-12)
        assert torch.autograd.gradcheck(
            lambda t, impl=impl: R.cross_map_norm(t, 5, 0.005, 0.75, 2.0, impl=impl, groups=2), (x,)
        )


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("fn", ["cross", "spatial"])
def test_low_precision_is_the_float32_result_rounded(impl: str, fn: str) -> None:
    """bf16 and fp16 inputs are computed in float32: the result is float32's, rounded once."""
    f = (
        (lambda t, i: R.cross_map_norm(t, 5, 1e-4 * 50, 0.75, 2.0, impl=i))
        if fn == "cross"
        else (lambda t, i: R.spatial_norm(t, 3, 5e-5 / 9 * 500, 0.75, 1.0, impl=i))
    )
    for dtype in (torch.bfloat16, torch.float16):
        x = _inputs(dtype, True).requires_grad_()
        ref = f(x.detach().float().requires_grad_(), "reference")
        out = f(x, impl)
        assert out.dtype == dtype and out.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(out, ref.to(dtype)) or (out.float() - ref).abs().max() <= ref.abs().max() * 2**-7
        g = torch.randn(out.shape, dtype=torch.float64).to(dtype)
        (go,) = torch.autograd.grad(out, x, g)
        xr = x.detach().float().requires_grad_()
        (gr,) = torch.autograd.grad(f(xr, "reference"), xr, g.float())
        assert go.dtype == dtype
        assert (go.float() - gr).abs().max() <= gr.abs().max() * 2**-6


def test_the_modules_use_the_fused_version_and_keep_their_formulas() -> None:
    x = _inputs(torch.float32, True) * 3
    lrn = CrossMapLRN(5, alpha=1e-4, beta=0.75, k=2.0)
    fused = lrn(x)
    lrn.impl = "reference"
    assert torch.allclose(fused, lrn(x), rtol=1e-5, atol=1e-6)
    sp = SpatialResponseNorm(3, 5e-5, 0.75)
    fused = sp(x)
    sp.impl = "reference"
    assert torch.allclose(fused, sp(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="odd"):
        SpatialResponseNorm(4)


def test_large_maps_and_many_channels_agree_with_the_reference() -> None:
    """AlexNet's first normalisation layer's shape (scaled down in batch), channels-last, float32."""
    x = torch.relu(torch.randn(2, 96, 55, 55)).contiguous(memory_format=torch.channels_last).requires_grad_()
    ref = R.cross_map_norm_reference(x, 5, 1e-4, 0.75, 2.0)
    out = R.cross_map_norm(x, 5, 1e-4, 0.75, 2.0, impl="native")
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(ref)
    assert torch.allclose(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(ref, x, g)[0], rtol=1e-4, atol=1e-6)


def test_auto_means_triton_on_cuda_native_on_the_cpu_torch_under_compile() -> None:
    yes, no = (lambda: True), (lambda: False)
    assert R.choose_impl("cuda", 4, False, yes, no) == "triton"  # the default on a GPU
    assert R.choose_impl("cuda", 4, False, no, no) == "torch"  # no triton: the torch Function
    assert R.choose_impl("cuda", 4, True, yes, no) == "torch"  # torch.compile fuses the torch Function
    assert R.choose_impl("cpu", 4, False, yes, yes) == "native"
    assert R.choose_impl("cpu", 4, False, yes, no) == "torch"
    assert R.choose_impl("cpu", 3, False, yes, yes) == "torch"

    def never() -> bool:
        raise AssertionError("asked whether triton imports on the CPU")

    assert R.choose_impl("cpu", 4, False, never, yes) == "native"
