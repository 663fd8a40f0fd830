"""Time to accuracy of the shipped recipes on the real datasets, as the README reports them.

    python benchmarks/time_to_accuracy.py --data-root ../shared/data [--only lenet5_mnist] [--seed 0]

Trains each recipe with its defaults, then prints a Markdown table (test error, training time,
throughput) and writes it with the machine's details to benchmarks/results/time_to_accuracy.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from alexnet import TrainConfig
from alexnet.train import train

HERE = Path(__file__).resolve().parent
RECIPES = {  # recipe -> (data spec kind, target test error, time limit in minutes), from the issue
    "lenet5_mnist": ("mnist", 0.010, 10),
    "cifar_18pct_cifar10": ("cifar10", 0.20, 20),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=os.environ.get("ALEXNET_DATA_ROOT", "../shared/data"))
    p.add_argument("--only", choices=sorted(RECIPES), action="append")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/bench")
    args = p.parse_args()
    rows = []
    for name in args.only or list(RECIPES):
        kind, target, minutes = RECIPES[name]
        out = Path(args.out) / f"{name}-seed{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
        cfg = TrainConfig.from_recipe(name, data=f"{kind}:{args.data_root}", out=str(out), seed=args.seed)
        # Decode (and cache) the data before the clock starts: the limit is on training.
        from alexnet.train import build_data

        build_data(cfg)
        t0 = time.perf_counter()
        r = train(cfg)
        wall = time.perf_counter() - t0
        f = r.final
        assert f is not None
        rows.append({
            "recipe": name, "model": cfg.model, "epochs": cfg.epochs, "test_top1_error": f.top1_error,
            "test_top5_error": f.top5_error, "n": f.n, "train_minutes": wall / 60,
            "images_per_sec": sum(m["images_per_sec"] for m in r.metrics) / len(r.metrics),
            "target_error": target, "target_minutes": minutes,
            "met": f.top1_error <= target and wall / 60 <= minutes, "run": str(out),
        })
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    lines = [
        f"# Time to accuracy ({time.strftime('%Y-%m-%d')}, {machine}, seed {args.seed})", "",
        "| recipe | model | epochs | test top-1 error | top-5 | training time | img/s | target | met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['recipe']} | {r['model']} | {r['epochs']} | {r['test_top1_error']:.2%} | {r['test_top5_error']:.2%} "
            f"| {r['train_minutes']:.1f} min | {r['images_per_sec']:.0f} | <= {r['target_error']:.0%} in "
            f"{r['target_minutes']} min | {'yes' if r['met'] else 'NO'} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    (HERE / "results").mkdir(exist_ok=True)
    with open(HERE / "results" / "time_to_accuracy.md", "a") as fh:
        fh.write(text + "\n```json\n" + json.dumps(rows, indent=1) + "\n```\n\n")
    return 0 if all(r["met"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
