"""ONNX export of every registered model, and predict throughput with torch and with ONNX Runtime:
the README's "Use a trained model" table.

    python benchmarks/onnx_predict.py [--run cifar_18pct=runs/...] [--images DIR] [--n 256] [--repeats 3]

For each model: ``alexnet export --format onnx`` of a run (a trained one where ``--run NAME=PATH``
gives it, else a checkpoint of the model at its paper's class count with its own initialisation),
the max abs difference of the probabilities that the export check measured, and ``predict``
images/s over the same N JPEGs (decode, resize, forward, top-5; batch 32) with torch (fp32,
``Classifier``) and with ONNX Runtime (``OnnxClassifier``), the two interleaved, median of the
repeats. Appends the table to benchmarks/results/onnx-cpu.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch
from _results import append_results

from alexnet.demo import SAMPLE
from alexnet.export import export_onnx
from alexnet.inference.classifier import expand_inputs, load
from alexnet.inference.onnx import OnnxClassifier
from alexnet.models import list_models
from alexnet.runtime import cpu_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's tests/support
from tests.support.data import save_untrained_run  # noqa: E402

HERE = Path(__file__).resolve().parent


def rate(clf: object, paths: list[str]) -> float:
    t0 = time.perf_counter()
    n = sum(1 for _ in clf.predict_paths(paths, top_k=5, batch_size=32))  # type: ignore[attr-defined]
    return n / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", default=[], metavar="NAME=PATH", help="a trained run for model NAME")
    p.add_argument("--images", help="a folder of images (default: the bundled CIFAR-10 sample's test split)")
    p.add_argument("--n", type=int, default=256, help="images per measurement")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(HERE / "results" / "onnx-cpu.md"))
    args = p.parse_args()
    runs = dict(r.split("=", 1) for r in args.run)
    rows = []
    with tempfile.TemporaryDirectory(prefix="alexnet-onnx-bench-") as tmp:
        images = args.images
        if not images:
            with tarfile.open(SAMPLE) as tf:
                tf.extractall(tmp, filter="data")
            images = str(next(Path(tmp).glob("*/test")))
        paths = sorted(expand_inputs([images]))
        paths = (paths * (args.n // len(paths) + 1))[: args.n]
        for name in list_models():
            run = Path(runs[name]) if name in runs else save_untrained_run(Path(tmp) / "fresh" / name, name)
            r = export_onnx(run, Path(tmp) / f"{name}.onnx")
            clf, ort_clf = load(run, device="cpu"), OnnxClassifier(r["path"])
            rate(clf, paths[:32]), rate(ort_clf, paths[:32])  # warm up both
            t, o = [], []
            for _ in range(args.repeats):
                t.append(rate(clf, paths))
                o.append(rate(ort_clf, paths))
            row = {
                "model": name,
                "weights": f"trained ({run.name})" if name in runs else "as initialised",
                "ok": "yes",
                "diff": r["max_abs_diff"],
                "mib": r["bytes"] / 2**20,
                "export_s": r["export_s"],
                "torch": statistics.median(t),
                "ort": statistics.median(o),
            }
            rows.append(row)
            print(
                f"{name:12s} diff {row['diff']:.1e}  torch {row['torch']:7.1f} img/s  "
                f"onnxruntime {row['ort']:7.1f} img/s",
                file=sys.stderr,
            )
    import onnxruntime

    cmd = " ".join(["python benchmarks/onnx_predict.py", *(f"--run {r}" for r in args.run)])
    lines = [
        f"## {time.strftime('%Y-%m-%d %H:%M')}, `{cmd}`",
        "",
        f"{cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; "
        f"{args.n} JPEGs per measurement, batch 32, median of {args.repeats}, torch and ONNX Runtime interleaved.",
        "",
        "| model | weights | ONNX export | ORT max abs diff (probabilities) | file MiB | predict img/s, torch fp32 | "
        "predict img/s, ONNX Runtime | ORT / torch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['weights']} | {r['ok']} ({r['export_s']:.1f} s) | {r['diff']:.1e} | "
            f"{r['mib']:.1f} | {r['torch']:.1f} | {r['ort']:.1f} | {r['ort'] / r['torch']:.2f}x |"
        )
    append_results(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
