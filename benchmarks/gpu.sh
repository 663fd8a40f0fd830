#!/usr/bin/env bash
# GPU training throughput in one run (under 8 minutes): alexnet and alexnet_tv step ceilings at
# batch 128/256/512 in fp32/bf16, with torch.compile and CUDA graphs, end to end from a generated
# packed dataset of 20,000 256x256 images, torchvision's reference style on the same card, and a
# 2-process DDP line when there are two GPUs. Writes benchmarks/results/gpu-<device>.md.
# Installs nothing: run it from the repository root on any machine with a CUDA GPU and torch.
#   benchmarks/gpu.sh [--budget SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
exec "$PYTHON" benchmarks/gpu.py "$@"
