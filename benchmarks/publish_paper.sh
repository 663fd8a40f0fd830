#!/usr/bin/env bash
# Publish finished experiments of the protocol's current version: copy each one's result.json,
# report.md and plots from a run folder into docs/paper/NAME, then regenerate docs/paper/report.md
# and the tables of docs/paper.md and the README (benchmarks/paper_table.py --write).
#   benchmarks/publish_paper.sh RUNS_PAPER NAME...      e.g. ../runs-wt/runs/paper bias-one lrn
set -euo pipefail
src=${1:?usage: benchmarks/publish_paper.sh RUNS_PAPER NAME...}
shift
alexnet=${ALEXNET:-alexnet}
for name in "$@"; do
  [ -f "$src/$name/result.json" ] || { echo "publish_paper: $src/$name has no result.json (not finished)" >&2; exit 2; }
  mkdir -p "docs/paper/$name"
  cp "$src/$name/result.json" "$src/$name/report.md" "$src"/"$name"/*.png "docs/paper/$name/"
done
# shellcheck disable=SC2086
$alexnet report docs/paper/*/result.json --out docs/paper/report.md
python benchmarks/paper_table.py docs/paper --write
