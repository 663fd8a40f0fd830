"""Keep freed memory in the process on Linux, so that a CPU training step does not page-fault.

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
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_done: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the settings above once per process; True when they are in effect."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if sys.platform != "linux" or os.environ.get("ALEXNET_MALLOC_CACHE", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    return _done
