#!/usr/bin/env bash
# The effect of keeping freed memory (src/alexnet/runtime.py) on CPU training steps: `alexnet bench
# train` with ALEXNET_MALLOC_CACHE=0 (glibc's default) and with it on, alternating, REPEATS times.
#
#   benchmarks/malloc_ab.sh [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
for rep in $(seq "${1:-2}"); do
  for setting in 0 1; do
    echo "ALEXNET_MALLOC_CACHE=$setting, run $rep"
    ALEXNET_MALLOC_CACHE=$setting "$py" -m alexnet bench train --model alexnet alexnet_tv --precision bf16 \
      --batch-size 64 --steps 6 --repeats 3 2>/dev/null | grep '^| `'
    ALEXNET_MALLOC_CACHE=$setting "$py" -m alexnet bench train --model cifar_18pct --precision fp32 \
      --batch-size 128 --steps 8 --repeats 3 2>/dev/null | grep '^| `'
  done
done
