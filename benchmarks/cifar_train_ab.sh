#!/usr/bin/env bash
# cifar_18pct training throughput, old code against new, alternating: the README's cifar_18pct line.
#
#   benchmarks/cifar_train_ab.sh OLD_REV [NEW_REV] [DATA_ROOT]   (NEW_REV default: the working tree)
#
# Each arm runs `alexnet train --recipe cifar_18pct_cifar10 --epochs 1` from its own tree (its own
# recipe) twice, the arms alternating, and prints the epoch's images_per_sec and val error from
# metrics.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1; new=${2:-}; data=${3:-../shared/data}
py=${PYTHON:-.venv/bin/python}
tmp=$(mktemp -d /tmp/alexnet-ab-XXXX)
trap 'git worktree remove --force "$tmp/old" 2>/dev/null || true; [ -n "$new" ] && git worktree remove --force "$tmp/new" 2>/dev/null || true; rm -rf "$tmp"' EXIT
git worktree add -q "$tmp/old" "$old"
newtree=$PWD
if [ -n "$new" ]; then git worktree add -q "$tmp/new" "$new"; newtree=$tmp/new; fi
for rep in 1 2; do
  for arm in old new; do
    tree=$tmp/old; [ $arm = new ] && tree=$newtree
    out=$tmp/run-$arm-$rep
    PYTHONPATH=$tree/src "$py" -m alexnet train --recipe "$tree/recipes/cifar_18pct_cifar10.toml" \
      --data "cifar10:$data" --epochs 1 --out "$out" > "$tmp/$arm-$rep.log" 2>&1
    "$py" - "$out/metrics.csv" "$arm" "$rep" <<'PY'
import csv, sys
row = list(csv.DictReader(open(sys.argv[1])))[-1]
print(f"{sys.argv[2]} run {sys.argv[3]}: {float(row['images_per_sec']):,.0f} img/s, val top-1 error {float(row['val_top1_error']):.4f}")
PY
  done
done
