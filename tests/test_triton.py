"""The Triton response-normalisation kernels against the eager formula: values and gradients, float64
where it can be exact, fp32 and bf16 within their rounding, both memory layouts, AlexNet's per-column
groups, window sizes, sizes that do not fill a block.

Marked ``triton``: ``TRITON_INTERPRET=1 .venv/bin/python -m pytest -m triton`` runs them on the CPU under
Triton's interpreter (CI does), or on a CUDA GPU without the variable. The choice of implementation
("auto": Triton on CUDA) is tested in the fast suite (test_rnorm.py)."""

from __future__ import annotations

import os

import pytest
import torch

pytestmark = pytest.mark.triton

if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
    pytest.skip("needs TRITON_INTERPRET=1 (the CPU) or a CUDA GPU", allow_module_level=True)
pytest.importorskip("triton")

from alexnet.models import _rnorm as R  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1" else "cpu"


def make(shape: tuple[int, ...], dtype: torch.dtype, channels_last: bool, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 3).relu()  # ReLU outputs, as in the nets
    x = x.to(dtype).to(DEVICE)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x.requires_grad_(True)


def compare(fn, ref, x: torch.Tensor, atol: float, rtol: float, grad_layout: str = "same") -> None:  # type: ignore[no-untyped-def]
    y = fn(x)
    xr = x.detach().double().requires_grad_(True)
    yr = ref(xr)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert (
        y.is_contiguous(memory_format=torch.channels_last) == x.is_contiguous(memory_format=torch.channels_last)
        or x.is_contiguous()
    )
    torch.testing.assert_close(y.double(), yr, atol=atol, rtol=rtol)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    if grad_layout == "other":  # the incoming gradient in the other memory layout
        g = (
            g.contiguous()
            if x.is_contiguous(memory_format=torch.channels_last)
            else g.contiguous(memory_format=torch.channels_last)
        )
    (dx,) = torch.autograd.grad(y, x, g.to(x.dtype).to(DEVICE))
    (dxr,) = torch.autograd.grad(yr, xr, g)
    torch.testing.assert_close(dx.double(), dxr, atol=atol, rtol=rtol)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size,groups,c", [(5, 1, 16), (5, 2, 16), (3, 1, 7), (7, 3, 12), (4, 1, 9)])
def test_cross_map_matches_the_eager_formula_in_float64(channels_last: bool, size: int, groups: int, c: int) -> None:
    x = make((3, c, 5, 7), torch.float64, channels_last)  # 735+ elements: not a multiple of the block
    compare(
        lambda t: R.cross_map_norm(t, size, 1e-1, 0.75, 2.0, impl="triton", groups=groups),
        lambda t: R.cross_map_norm_reference(t, size, 1e-1, 0.75, 2.0, groups),
        x,
        atol=1e-12,
        rtol=1e-12,
    )


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size", [3, 5])
def test_spatial_matches_the_eager_formula_in_float64(channels_last: bool, size: int) -> None:
    x = make((2, 5, 9, 6), torch.float64, channels_last)
    compare(
        lambda t: R.spatial_norm(t, size, 5e-2, 0.75, 1.0, impl="triton"),
        lambda t: R.spatial_norm_reference(t, size, 5e-2, 0.75, 1.0),
        x,
        atol=1e-12,
        rtol=1e-12,
    )


def test_gradcheck_in_float64() -> None:
    x = make((1, 6, 3, 4), torch.float64, False)
    assert torch.autograd.gradcheck(lambda t: R.cross_map_norm(t, 5, 0.3, 0.75, 1.0, impl="triton", groups=2), (x,))
    assert torch.autograd.gradcheck(lambda t: R.spatial_norm(t, 3, 0.3, 0.75, 1.0, impl="triton"), (x,))


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fp32_and_bf16_within_their_rounding(dtype: torch.dtype, tol: float, channels_last: bool) -> None:
    # AlexNet's constants (alpha/n = 2e-5 per value, k = 2) and cuda-convnet's spatial ones
    x = make((2, 16, 6, 6), dtype, channels_last)
    compare(
        lambda t: R.cross_map_norm(t, 5, 2e-5, 0.75, 2.0, impl="triton", groups=2),
        lambda t: R.cross_map_norm_reference(t, 5, 2e-5, 0.75, 2.0, 2),
        x,
        atol=tol,
        rtol=tol,
        grad_layout="other",
    )
    compare(
        lambda t: R.spatial_norm(t, 3, 5e-5 / 9, 0.75, 1.0, impl="triton"),
        lambda t: R.spatial_norm_reference(t, 3, 5e-5 / 9, 0.75, 1.0),
        x,
        atol=tol,
        rtol=tol,
    )


def test_the_kernels_agree_with_the_torch_function_the_gpu_used_before() -> None:
    x = make((2, 12, 4, 5), torch.float32, True)
    y_triton = R.cross_map_norm(x, 5, 1e-3, 0.75, 2.0, impl="triton", groups=2)
    y_torch = R.cross_map_norm(x, 5, 1e-3, 0.75, 2.0, impl="torch", groups=2)
    torch.testing.assert_close(y_triton, y_torch, atol=1e-6, rtol=1e-6)


def test_the_traffic_model() -> None:
    from alexnet.models._rnorm_triton import bytes_moved

    # the paper's AlexNet in bf16: 96x55x55 after conv1, 256x27x27 after conv2, per image
    per_image = sum(sum(bytes_moved(s, 2).values()) for s in [(1, 96, 55, 55), (1, 256, 27, 27)])
    assert per_image == 5 * 2 * (96 * 55 * 55 + 256 * 27 * 27) == 4_770_240
