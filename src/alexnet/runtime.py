"""Where and how a process computes: the device, the precision, the random seeds, the host
allocator, and a description of the machine for the records.

The allocator: freed memory is kept in the process on Linux, so that a training step does not
page-fault. (One setting, applied once: there used to be two, with different trim thresholds.)

glibc serves every allocation over 32 MB (its largest mmap threshold) with a fresh ``mmap`` and
gives it back with ``munmap`` when freed. The activations of AlexNet's first layers at batch 64 are
such allocations, so every step maps new pages and the kernel zero-fills them on first touch (about
110,000 page faults per training step of AlexNet at batch 32 here): a ReLU over conv1's 18.6M bf16
values took 10.7 ms that way against 1.4 ms in memory already mapped, and ``alexnet bench train``
in bf16 ran the paper's AlexNet at 114 and 116 img/s against 142 and 146 with freed memory kept,
``alexnet_tv`` at 136 and 144 against 169 and 168 (``benchmarks/malloc_ab.sh``, the settings
alternating, the 2-core dev machine). ``mallopt(M_MMAP_MAX, 0)`` sends large allocations to the heap and a high
``M_TRIM_THRESHOLD`` keeps the heap's free top, so a step reuses the pages of the one before. The
cost: the process keeps its peak memory until it exits, which a training run does anyway.

``ALEXNET_MALLOC_CACHE=0`` turns it off. Other C libraries (musl) and systems are left as they are.
"""

from __future__ import annotations

import ctypes
import os
import platform
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import UserError
from .settings import malloc_cache
from .version import __version__

# --------------------------------------------------------------------------------------- the device


def pick_device(name: str, local_rank: int = 0, world_size: int = 1) -> torch.device:
    """``auto``: under torchrun each process takes the GPU of its local rank. ``cuda:N`` under torchrun
    would put every process on GPU N: refused in one line."""
    if world_size > 1 and name.startswith("cuda:"):
        raise UserError(
            f"--device {name}: under torchrun each process takes its local rank's GPU (cuda:LOCAL_RANK); "
            "give --device cuda (or auto) and choose the GPUs with CUDA_VISIBLE_DEVICES"
        )
    if name == "auto" or (name == "cuda" and local_rank):
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name}: not a device (auto, cpu, cuda, cuda:N, mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(
            f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
            f"cuda:0 to cuda:{torch.cuda.device_count() - 1}"
        )
    return dev


def select_device(device: torch.device) -> None:
    """Make ``cuda:N`` the current CUDA device, so that streams, CUDA graphs and anything allocated
    without an explicit device land on it, not on device 0."""
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)


def kernel_settings(device: torch.device, *, deterministic: bool, tf32: bool, cudnn_benchmark: bool) -> dict[str, bool]:
    """The kernel choices of a run (a decision, kept apart from applying it): under ``deterministic``
    cuDNN neither autotunes (its timing picks differ between runs) nor uses non-deterministic
    algorithms, and fp32 math stays fp32 (no TF32). Only CUDA has these choices."""
    cuda = device.type == "cuda"
    return {
        "deterministic": deterministic,
        "cudnn_benchmark": cuda and cudnn_benchmark and not deterministic,
        "tf32": cuda and tf32 and not deterministic,
    }


def apply_kernel_settings(settings: dict[str, bool]) -> None:
    """Set torch's global switches from ``kernel_settings``. Deterministic mode warns (not fails) on an
    operation without a deterministic kernel, naming it; the model and the loss avoid the ones torch
    lists (``loss_function``, AlexNet's identity adaptive pooling)."""
    if settings["deterministic"]:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS' deterministic workspace
    torch.use_deterministic_algorithms(settings["deterministic"], warn_only=True)
    torch.backends.cudnn.deterministic = settings["deterministic"]
    torch.backends.cudnn.benchmark = settings["cudnn_benchmark"]
    torch.backends.cuda.matmul.allow_tf32 = settings["tf32"]
    torch.backends.cudnn.allow_tf32 = settings["tf32"]


class preserved_rng:
    """``with preserved_rng(device):`` the global random states (CPU, and the device's CUDA generator)
    are as they were before the block: warm-up work (a CUDA graph's capture runs the step three times,
    drawing dropout masks) does not shift what the run draws after it."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> preserved_rng:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return self

    def __exit__(self, *exc: Any) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``auto``: bf16 on a GPU that supports it (tensor cores, half the memory traffic), else fp32."""
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def slow_half_precision(precision: str, device: torch.device | str) -> str | None:
    """A one-line note when ``precision`` (bf16, fp16) runs on a CPU without native kernels for it, else
    None. oneDNN reports whether the CPU has them (AVX-512 BF16 / FP16, AMX); without them torch emulates
    the type, far slower than fp32: a 1024 x 1024 bf16 product ran at 0.8 GFLOP/s against fp32's 110 on a
    2-core AMD EPYC with AVX2 only (2026-12-03), where the AVX-512 BF16 machine of
    benchmarks/results/train-cpu.md ran bf16 products at about 4x its fp32 rate (2026-11-28)."""
    device = torch.device(device)
    precision = resolve_precision(precision, device)
    if device.type != "cpu" or precision not in ("bf16", "fp16"):
        return None
    try:
        probe = (
            torch.ops.mkldnn._is_mkldnn_bf16_supported
            if precision == "bf16"
            else torch.ops.mkldnn._is_mkldnn_fp16_supported
        )
        native = bool(probe())
    except (AttributeError, RuntimeError):  # a torch without the probe: nothing known, nothing said
        return None
    if native:
        return None
    return (
        f"--precision {precision}: this CPU has no native {precision} kernels (oneDNN reports none), so torch "
        "emulates it, many times slower than fp32 (about 100x for a matrix product on an AVX2 EPYC); "
        "--precision fp32 or auto is the fast choice here"
    )


def autocast_context(device: torch.device, precision: str, cache: bool = True) -> Any:
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(resolve_precision(precision, device))
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None, cache_enabled=cache)


def sum_dtype(device: torch.device) -> torch.dtype:
    """Running sums in float64 where the device has it (MPS does not)."""
    return torch.float32 if device.type == "mps" else torch.float64


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------ the host allocator

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
M_ARENA_MAX = -8
_done: bool | None = None


def _mallopt(settings: tuple[tuple[int, int], ...]) -> bool:
    """Apply glibc ``mallopt`` settings once per process (the first caller's; a process is either a
    trainer or a server); True when in effect. ``ALEXNET_MALLOC_CACHE=0`` and non-glibc systems: no."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if sys.platform != "linux" or not malloc_cache():
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = all(bool(mallopt(k, v)) for k, v in settings)
    return _done


def keep_freed_memory() -> bool:
    """Apply the allocator settings of the module's docstring once per process; True when in effect."""
    return _mallopt(((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1)))


def return_freed_memory(keep_bytes: int = 64 << 20) -> bool:
    """The server's allocator setting, the opposite of ``keep_freed_memory``: a long-lived process
    whose peaks come from clients (uploads, decoded images, bodies of aborted requests) gives freed
    memory back to the system. Blocks of 1 MB and more are mapped and unmapped on their own (a fixed
    threshold: glibc's default one rises after each free up to 32 MB, and then keeps such blocks in
    the heap), the heap is trimmed once more than ``keep_bytes`` is free at its top, and at most 4
    arenas serve the request threads (glibc's default, 8 per core, multiplies what stays). Applied
    once per process instead of ``keep_freed_memory``; True when in effect."""
    return _mallopt(((M_MMAP_THRESHOLD, 1 << 20), (M_TRIM_THRESHOLD, keep_bytes), (M_ARENA_MAX, 4)))


def trim_freed_memory() -> None:
    """Give the free memory of every malloc arena back to the system now (glibc's ``malloc_trim``):
    the server calls it after a request that brought a large body, kept or aborted, whose 64 KB
    chunks would otherwise stay scattered in the arenas of the threads that read them."""
    if sys.platform != "linux":
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


# ------------------------------------------------------------------------------------- the machine


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, str]:
    """Package version, git commit, torch, Python and platform: what a run folder records."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "alexnet": __version__,
        "git_commit": commit or "unknown",
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "machine": platform.platform(),
    }
