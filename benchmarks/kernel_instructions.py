"""Machine instructions and global loads per element of the Triton response-normalisation kernels,
compiled ahead of time for an H100/H200 (sm_90) on a machine without a GPU: ``triton.compile`` for a
CUDA target, the cubin disassembled with the nvdisasm that ships with Triton, every SASS instruction
and every global load (LDG) counted and divided by the elements each thread handles (the kernels are
straight-line: their windows are unrolled at compile time).

    python benchmarks/kernel_instructions.py            # a Markdown table; --json for the numbers
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from alexnet.models import _rnorm_triton as RT  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)
NUM_WARPS = 4  # Triton's default
GEOMETRY = {n: "i32" for n in ("total", "sn", "sc", "sh", "sw")}
SHAPES = {"cross": {"C": 96, "H": 55, "W": 55}, "spatial": {"C": 32, "H": 16, "W": 16}}  # AlexNet conv1; 18pct
SCALARS = {"a": "fp32", "b": "fp32", "k": "fp32"}


def _signature(pointers: tuple[str, ...], extra: dict[str, str], meta: dict[str, object]) -> tuple[dict, dict]:
    """The kernel's signature in its parameters' order (pointers, total, C, H, W, strides, a, b, k, ...)."""
    shape = SHAPES["cross" if "GS" in extra else "spatial"]
    meta = {**shape, **meta}
    sig = {p: "*bf16" for p in pointers} | {"total": "i32"} | {d: "constexpr" for d in shape}
    sig |= {n: "i32" for n in ("sn", "sc", "sh", "sw")} | SCALARS | extra
    sig |= {k: "constexpr" for k in meta if k not in shape and k not in extra}
    return sig, meta


KERNELS = {  # name -> (kernel, signature, constexprs): AlexNet's cross-map norm and cuda-convnet's spatial one
    "cross-map forward": (
        RT._cross_forward,
        *_signature(
            ("x_ptr", "y_ptr"),
            {"GS": "constexpr"},
            {"GS": 48, "SIZE": 5, "BEFORE": 2, "BLOCK": RT.BLOCK, "CHANNELS_LAST": True, "F64": False, "FAST": True},
        ),
    ),
    "cross-map backward": (
        RT._cross_backward,
        *_signature(
            ("x_ptr", "g_ptr", "dx_ptr"),
            {"GS": "constexpr"},
            {"GS": 48, "SIZE": 5, "BEFORE": 2, "BLOCK": RT.BLOCK, "CHANNELS_LAST": True, "F64": False, "FAST": True},
        ),
    ),
    "spatial forward": (
        RT._spatial_forward,
        *_signature(
            ("x_ptr", "y_ptr"), {}, {"SIZE": 3, "BLOCK": RT.BLOCK, "CHANNELS_LAST": True, "F64": False, "FAST": True}
        ),
    ),
    "spatial backward": (
        RT._spatial_backward,
        *_signature(
            ("x_ptr", "g_ptr", "dx_ptr"),
            {},
            {"SIZE": 3, "BLOCK": RT.BLOCK, "CHANNELS_LAST": True, "F64": False, "FAST": True},
        ),
    ),
}


def count(kernel: object, signature: dict, constexprs: dict) -> dict[str, float]:
    compiled = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=constexprs), target=TARGET)
    nvdisasm = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "nvdisasm"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        sass = subprocess.run([str(nvdisasm), f.name], capture_output=True, text=True, check=True).stdout
    ops = re.findall(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", sass)
    per_thread = constexprs["BLOCK"] / (32 * NUM_WARPS)
    loads = sum(op.startswith("LDG") for op in ops)
    return {"instructions": len(ops) / per_thread, "loads": loads / per_thread, "elements_per_thread": per_thread}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows = {name: count(*spec) for name, spec in KERNELS.items()}
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print("| kernel (sm_90, bf16, channels-last) | instructions per element | global loads per element |")
    print("| --- | --- | --- |")
    for name, r in rows.items():
        print(f"| {name} | {r['instructions']:.0f} | {r['loads']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
