#!/usr/bin/env bash
# The protocol's experiments (docs/paper/protocol.md, version 2) with their default settings, one after
# the other, cheapest first, then the report page.
#   benchmarks/paper_experiments.sh DATA_ROOT [OUT] [NAME...]
# DATA_ROOT holds cifar10/ and MNIST/ (../shared/data here); OUT defaults to runs/paper.
# Finished runs are reused (docs/paper/protocol.md, "The run cache"), so an interrupted sweep continues
# where it stopped. Run it from a worktree at one commit, at low priority, so it does not block other work:
#   git worktree add ../runs-wt HEAD && cd ../runs-wt
#   PYTHONPATH=$PWD/src ALEXNET="nice -n 19 /path/to/.venv/bin/python -m alexnet" \
#     benchmarks/paper_experiments.sh ../shared/data runs/paper
# relu-vs-tanh (not rerun in version 2) and weight-decay (not run: its budget) run when named.
set -euo pipefail
root=${1:?usage: benchmarks/paper_experiments.sh DATA_ROOT [OUT] [NAME...]}
out=${2:-runs/paper}
shift $(( $# >= 2 ? 2 : 1 ))
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(bias-one ten-crop lenet5 lrn columns dropout augment overlap-pool)
alexnet=${ALEXNET:-alexnet}
mkdir -p "$out"
for name in "${names[@]}"; do
  kind=cifar10
  [ "$name" = lenet5 ] && kind=mnist
  start=$(date +%s)
  # shellcheck disable=SC2086  # ALEXNET may be a command with arguments (nice, python -m)
  $alexnet experiment "$name" --data "$kind:$root" --out "$out/$name" --quiet
  echo "$name: $(( $(date +%s) - start )) s" | tee -a "$out/timings.txt"
done
dirs=()
for d in "$out"/*/; do [ -f "$d/result.json" ] && dirs+=("$d"); done
# shellcheck disable=SC2086
$alexnet report "${dirs[@]}" --out "$out/report.md"
