#!/usr/bin/env bash
# Every paper experiment with its default settings, one after the other, then the report page.
#   benchmarks/paper_experiments.sh DATA_ROOT [OUT] [NAME...]
# DATA_ROOT holds cifar10/ and MNIST/ (../shared/data here); OUT defaults to runs/paper.
# Finished runs are reused, so an interrupted sweep continues where it stopped.
set -euo pipefail
root=${1:?usage: benchmarks/paper_experiments.sh DATA_ROOT [OUT] [NAME...]}
out=${2:-runs/paper}
shift $(( $# >= 2 ? 2 : 1 ))
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(relu-vs-tanh lrn overlap-pool dropout augment ten-crop columns lenet5 weight-decay bias-one)
alexnet=${ALEXNET:-alexnet}
mkdir -p "$out"
for name in "${names[@]}"; do
  kind=cifar10
  [ "$name" = lenet5 ] && kind=mnist
  start=$(date +%s)
  "$alexnet" experiment "$name" --data "$kind:$root" --out "$out/$name" --quiet
  echo "$name: $(( $(date +%s) - start )) s" | tee -a "$out/timings.txt"
done
dirs=()
for d in "$out"/*/; do [ -f "$d/result.json" ] && dirs+=("$d"); done
"$alexnet" report "${dirs[@]}" --out "$out/report.md"
