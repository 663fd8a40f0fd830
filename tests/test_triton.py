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


# Triton passes Python floats to a kernel as fp32 on a GPU (the interpreter keeps doubles): the float64
# tests' constants are exact in fp32, so that what a GPU computes is the float64 reference within 1e-12
A_CROSS, A_SPATIAL, A_GRAD, BETA = 0.125, 0.0625, 0.25, 0.75


def test_the_float64_constants_are_exact_in_fp32() -> None:
    import numpy as np

    for v in (A_CROSS, A_SPATIAL, A_GRAD, BETA, 2.0, 1.0):
        assert float(np.float32(v)) == v, v


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size,groups,c", [(5, 1, 16), (5, 2, 16), (3, 1, 7), (7, 3, 12), (4, 1, 9)])
def test_cross_map_matches_the_eager_formula_in_float64(channels_last: bool, size: int, groups: int, c: int) -> None:
    x = make((3, c, 5, 7), torch.float64, channels_last)  # 735+ elements: not a multiple of the block
    compare(
        lambda t: R.cross_map_norm(t, size, A_CROSS, BETA, 2.0, impl="triton", groups=groups),
        lambda t: R.cross_map_norm_reference(t, size, A_CROSS, BETA, 2.0, groups),
        x,
        atol=1e-12,
        rtol=1e-12,
    )


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size", [3, 5])
def test_spatial_matches_the_eager_formula_in_float64(channels_last: bool, size: int) -> None:
    x = make((2, 5, 9, 6), torch.float64, channels_last)
    compare(
        lambda t: R.spatial_norm(t, size, A_SPATIAL, BETA, 1.0, impl="triton"),
        lambda t: R.spatial_norm_reference(t, size, A_SPATIAL, BETA, 1.0),
        x,
        atol=1e-12,
        rtol=1e-12,
    )


def test_gradcheck_in_float64() -> None:
    x = make((1, 6, 3, 4), torch.float64, False)
    assert torch.autograd.gradcheck(lambda t: R.cross_map_norm(t, 5, A_GRAD, BETA, 1.0, impl="triton", groups=2), (x,))
    assert torch.autograd.gradcheck(lambda t: R.spatial_norm(t, 3, A_GRAD, BETA, 1.0, impl="triton"), (x,))


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


def test_the_traffic_model_is_what_the_launches_read_and_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """``bytes_moved`` (the README's 4.8 MB per AlexNet image in bf16) against the tensors each launch
    is given: forward x in and y out, backward x and g in and dx out, each element once."""
    from alexnet.models import _rnorm_triton as RT

    moved: list[int] = []
    real = RT._launch

    def counting(kernel, tensors, *args, **meta):  # type: ignore[no-untyped-def]
        moved.append(sum(t.numel() * t.element_size() for t in tensors))
        return real(kernel, tensors, *args, **meta)

    monkeypatch.setattr(RT, "_launch", counting)
    shape = (2, 8, 5, 4)
    x = make(shape, torch.float32, True)
    R.cross_map_norm(x, 5, 1e-4, 0.75, 2.0, impl="triton", groups=2).sum().backward()
    model = RT.bytes_moved(shape, 4)
    assert moved == [model["forward"], model["backward"]]
    # the paper's AlexNet in bf16: 96x55x55 after conv1, 256x27x27 after conv2, per image
    per_image = sum(sum(RT.bytes_moved(s, 2).values()) for s in [(1, 96, 55, 55), (1, 256, 27, 27)])
    assert per_image == 4_770_240


@pytest.mark.parametrize("channels_last", [False, True])
def test_a_tensor_over_the_launch_limit_is_launched_in_parts(
    channels_last: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offsets are int32: a tensor of 2^31 elements or more is launched in parts of whole images, each
    from its own data pointer. With the limit lowered to 2.5 images, a batch of 5 goes in 3 parts and
    gives what one launch gives, values and gradients."""
    from alexnet.models import _rnorm_triton as RT

    x = make((5, 8, 4, 3), torch.float64, channels_last)
    y1 = R.cross_map_norm(x, 5, A_CROSS, BETA, 2.0, impl="triton", groups=2)
    (d1,) = torch.autograd.grad(y1.sum(), x)
    s1 = R.spatial_norm(x, 3, A_SPATIAL, BETA, 1.0, impl="triton")
    launches: list[int] = []
    real = RT.chunks
    monkeypatch.setattr(RT, "MAX_LAUNCH", int(2.5 * x[0].numel()))
    monkeypatch.setattr(RT, "chunks", lambda t: (parts := real(t), launches.append(len(parts)))[0])
    y2 = R.cross_map_norm(x, 5, A_CROSS, BETA, 2.0, impl="triton", groups=2)
    (d2,) = torch.autograd.grad(y2.sum(), x)
    s2 = R.spatial_norm(x, 3, A_SPATIAL, BETA, 1.0, impl="triton")
    assert launches and all(n == 3 for n in launches)
    assert torch.equal(y1, y2) and torch.equal(d1, d2) and torch.equal(s1, s2)
    assert [(p.start, p.stop) for p in real(x)] == [(0, 2), (2, 4), (4, 5)]


def test_every_launch_is_guarded_by_its_tensors_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--device cuda:1`` from a thread where GPU 0 is current must launch on GPU 1: every launch runs
    under ``device_guard(x)`` (torch.cuda.device(x.device) on a GPU), forward and backward."""
    import contextlib

    from alexnet.models import _rnorm_triton as RT

    guarded: list[torch.device] = []
    real_guard = RT.device_guard

    def guard(t: torch.Tensor):  # type: ignore[no-untyped-def]
        guarded.append(t.device)
        return contextlib.nullcontext()

    monkeypatch.setattr(RT, "device_guard", guard)
    x = make((2, 8, 3, 3), torch.float32, True)
    R.cross_map_norm(x, 5, 1e-4, 0.75, 2.0, impl="triton").sum().backward()
    R.spatial_norm(x, 3, 1e-4, 0.75, 1.0, impl="triton").sum().backward()
    assert len(guarded) == 4 and all(d == x.device for d in guarded)

    class OnGpu:  # what the guard makes of a tensor on cuda:1 (nothing runs on a GPU here)
        is_cuda, device = True, torch.device("cuda", 1)

    made = real_guard(OnGpu())  # type: ignore[arg-type]
    assert isinstance(made, torch.cuda.device) and made.idx == 1
