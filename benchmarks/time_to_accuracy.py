"""Time to accuracy of the shipped recipes on the real datasets, as the README reports them.

    python benchmarks/time_to_accuracy.py --data-root ../shared/data [--only lenet5_mnist] [--seeds 0 1 2]

Trains each recipe with its defaults for each seed, then prints a Markdown table (test error,
training time, throughput; per seed and as mean ± std over the seeds) and writes it with the
machine's details to benchmarks/results/time_to_accuracy.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from alexnet import TrainConfig
from alexnet.training import train

HERE = Path(__file__).resolve().parent
RECIPES = {  # recipe -> (data spec kind, target test error, time limit in minutes), from the issues
    "lenet5_mnist": ("mnist", 0.0095, 10),  # the paper's 0.95%, on every seed
    "cifar_18pct_cifar10": ("cifar10", 0.20, 20),
    # cuda-convnet's own 140-epoch recipe: its claimed 18%, plus half a point for our JPEG re-encoded
    # copy of CIFAR-10 (fixed before the first run); 20 min on a GTX 580, an hour allowed on 2 cores
    "cifar_18pct_cudaconvnet": ("cifar10", 0.185, 60),
}


def _cpu() -> str:
    from alexnet.runtime import cpu_model

    return cpu_model()


def _val(r: dict) -> str:
    if not r["val_split"]:
        return "— (no split: selection on the test split)"
    return f"{r['last_val_top1_error']:.2%} ({r['val_split']:g} of train)"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=os.environ.get("ALEXNET_DATA_ROOT", "../shared/data"))
    p.add_argument("--only", choices=sorted(RECIPES), action="append")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed (default: 0)")
    p.add_argument("--out", default="runs/bench")
    args = p.parse_args()
    rows = []
    for name, seed in [(n, s) for n in (args.only or list(RECIPES)) for s in args.seeds]:
        kind, target, minutes = RECIPES[name]
        out = Path(args.out) / f"{name}-seed{seed}-{time.strftime('%Y%m%d-%H%M%S')}"
        cfg = TrainConfig.from_recipe(name, data=f"{kind}:{args.data_root}", out=str(out), seed=seed)
        # Decode (and cache) the data before the clock starts: the limit is on training.
        from alexnet.engine.data import build_data

        build_data(cfg)
        t0 = time.perf_counter()
        r = train(cfg)
        wall = time.perf_counter() - t0
        # with a held-out validation split (val_split), the test split's one evaluation at the end;
        # without, the last epoch's evaluation is on the test split
        f = r.test or r.final
        assert f is not None
        rows.append(
            {
                "recipe": name,
                "seed": seed,
                "model": cfg.model,
                "epochs": cfg.epochs,
                "test_top1_error": f.top1_error,
                "best_val_top1_error": r.best_top1_error,
                "best_epoch": r.best_epoch,
                "val_split": cfg.val_split,
                "last_val_top1_error": r.final.top1_error if r.final else None,
                "test_top5_error": f.top5_error,
                "n": f.n,
                "train_minutes": wall / 60,
                "images_per_sec": sum(m["images_per_sec"] for m in r.metrics) / len(r.metrics),
                "target_error": target,
                "target_minutes": minutes,
                "met": f.top1_error <= target and wall / 60 <= minutes,
                "run": str(out),
            }
        )
    machine = f"{_cpu()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    seeds = " ".join(map(str, args.seeds))
    lines = [
        f"# Time to accuracy ({time.strftime('%Y-%m-%d')}, {machine}, seeds {seeds})",
        "",
        f"Command: `python benchmarks/time_to_accuracy.py --data-root {args.data_root} --only "
        f"{' --only '.join(dict.fromkeys(r['recipe'] for r in rows))} --seeds {seeds}`; the final weights' test error "
        "(with a val_split, the test split is evaluated only then; the validation column is the held-out split's).",
        "",
        "| recipe | seed | epochs | test top-1 error | top-5 | validation top-1 (held out) | training time | img/s "
        "| target | met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['recipe']} | {r['seed']} | {r['epochs']} | {r['test_top1_error']:.2%} | {r['test_top5_error']:.2%} "
            f"| {_val(r)} | {r['train_minutes']:.1f} min | {r['images_per_sec']:.0f} | <= {r['target_error']:.2%} in "
            f"{r['target_minutes']} min | {'yes' if r['met'] else 'NO'} |"
        )
    for name in dict.fromkeys(r["recipe"] for r in rows):
        mine = [r for r in rows if r["recipe"] == name]
        if len(mine) > 1:
            e = [100 * r["test_top1_error"] for r in mine]
            t = [r["train_minutes"] for r in mine]
            lines.append(
                f"| {name} | mean ± std | {mine[0]['epochs']} | {statistics.fmean(e):.2f} ± "
                f"{statistics.stdev(e):.2f}% | | | {statistics.fmean(t):.1f} min | | | "
                f"{sum(r['met'] for r in mine)} of {len(mine)} |"
            )
    text = "\n".join(lines) + "\n"
    print(text)
    (HERE / "results").mkdir(exist_ok=True)
    with open(HERE / "results" / "time_to_accuracy.md", "a") as fh:
        fh.write(text + "\n```json\n" + json.dumps(rows, indent=1) + "\n```\n\n")
    return 0 if all(r["met"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
