#!/usr/bin/env bash
# Fine-tuning against training from scratch, on a real example that ships here: the cifar_18pct run
# of the README's Results table, fine-tuned to CIFAR-10's cat and dog classes (10,000 training and
# 2,000 test images), against the same net trained from scratch on them for the same time: the same
# number of epochs of the same network on the same images (the times are printed beside).
#   benchmarks/finetune_catdog.sh SOURCE_RUN [DATA_ROOT] [OUT]
set -euo pipefail
src=${1:?usage: benchmarks/finetune_catdog.sh SOURCE_RUN [DATA_ROOT] [OUT]}
root=${2:-../shared/data}
out=${3:-runs/finetune-catdog}
alexnet=${ALEXNET:-alexnet}
python=${PYTHON:-python3}
mkdir -p "$out"
# the cat and dog folders of the extracted CIFAR-10 copy, linked into a 2-class image folder
folder=$("$python" -c "from alexnet.data.datasets import _cifar10_source; print(_cifar10_source('$root')[1])")
rm -rf "$out/data"
for split in train test; do
  mkdir -p "$out/data/$split"
  for c in cat dog; do ln -s "$folder/$split/$c" "$out/data/$split/$c"; done
done
rm -rf "$out/finetuned" "$out/scratch"
epochs=${EPOCHS:-3}
"$alexnet" train --recipe finetune --init "$src" --data "$out/data" --out "$out/finetuned" --epochs "$epochs" \
    --batch-size 128 --lr 0.02 --image-size 32 --translate 2 --workers 2 > "$out/finetuned.log" 2>&1
# from scratch: the cifar_18pct fast recipe's settings (its schedule over the same epochs)
"$alexnet" train --recipe cifar_18pct_cifar10 --data "$out/data" --out "$out/scratch" --epochs "$epochs" \
    --workers 2 > "$out/scratch.log" 2>&1
echo "| start | epochs | training time | test top-1 error (cat vs dog, 2,000 images) |"
echo "| --- | --- | --- | --- |"
"$python" - "$out" <<'PY'
import csv, sys
out = sys.argv[1]
for name, what in (("finetuned", "fine-tuned from the cifar_18pct run"), ("scratch", "from scratch")):
    rows = list(csv.DictReader(open(f"{out}/{name}/metrics.csv")))
    t = sum(float(r["epoch_seconds"]) for r in rows)
    print(f"| {what} | {len(rows)} | {t:.0f} s | {100 * float(rows[-1]['val_top1_error']):.2f}% |")
PY
