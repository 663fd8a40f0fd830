#!/usr/bin/env bash
# The GPU benchmark and check in one run (under 8 minutes on a GPU): throughput of alexnet and alexnet_tv
# (step, end to end from generated packed data, torchvision's reference), a 2-epoch `alexnet train` of
# the paper's network with and without CUDA graphs, kill -9 and --resume under --deterministic compared
# bit for bit, the Triton LRN against the torch fallback, and 2-process DDP with two GPUs.
# Writes OUT/gpu-<device>.md and .json. Installs nothing.
#   benchmarks/gpu.sh [--out DIR] [--budget SECONDS]
#   benchmarks/gpu.sh --smoke --out DIR        # every row at toy size on any machine (CI runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
[ -x .venv/bin/python ] && PYTHON="${PYTHON_OVERRIDE:-.venv/bin/python}"
exec "$PYTHON" benchmarks/gpu.py "$@"
