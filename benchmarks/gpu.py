"""GPU training throughput, in one run of under 8 minutes: ``benchmarks/gpu.sh`` calls this.

    PYTHONPATH=src python benchmarks/gpu.py [--out benchmarks/results] [--budget 420]

On the first CUDA GPU: the training step of ``alexnet`` and ``alexnet_tv`` on synthetic data at
batch 128/256/512 in fp32 and bf16 (eager), then at batch 256 in bf16 with ``torch.compile`` and
with CUDA graphs; end to end from a generated packed dataset of 20,000 256x256 images (in the page
cache after it is written) through the training loop's input pipeline; torchvision's reference
style (its AlexNet, ImageFolder + PIL RandomResizedCrop, DataLoader workers, fp32) on generated
photo-sized JPEGs; and, with two or more GPUs, one epoch of 2-process DDP under torchrun. Writes
``OUT/gpu-<device>.md`` with the card, date, command and every figure, and prints the table.
Installs nothing: it needs torch and torchvision (and triton for --compile), as on any CUDA machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from alexnet.bench import bench_train  # noqa: E402
from alexnet.testing import synthetic_jpegs, synthetic_packed  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--budget", type=float, default=420, help="seconds; later rows are skipped past it")
    p.add_argument("--images", type=int, default=20000)
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA GPU here", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    card = torch.cuda.get_device_name(0)
    workers = min(16, os.cpu_count() or 4)
    rows: list[dict] = []
    notes: list[str] = []

    def left() -> float:
        return args.budget - (time.perf_counter() - t0)

    def run(label: str, models: list[str], **kw: object) -> None:
        if left() < 20:
            notes.append(f"skipped (time budget): {label}")
            return
        try:
            for r in bench_train(models, log=lambda s: None, workers=workers, **kw):  # type: ignore[arg-type]
                r["label"] = label
                rows.append(r)
                print(json.dumps({k: r[k] for k in ("label", "model", "batch_size", "precision", "step_images_per_sec",
                                                    "images_per_sec", "baseline_images_per_sec", "lrn_share")}),
                      flush=True)
        except Exception as e:  # one failing configuration must not lose the others
            notes.append(f"failed: {label}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            print(notes[-1], file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="alexnet-gpu-") as tmp:
        packed = synthetic_packed(Path(tmp) / "packed", args.images, val=1000)
        jpegs = synthetic_jpegs(Path(tmp) / "jpegs", 4096)
        prep = time.perf_counter() - t0
        models = ["alexnet", "alexnet_tv"]
        run("end to end, bf16, batch 256 (+ torchvision reference, fp32)", models, batch_size=256, precision="bf16",
            data=str(packed), jpeg_dir=str(jpegs), steps=20, repeats=3)
        for precision in ("bf16", "fp32"):
            for bs in (128, 256, 512):
                run(f"step, {precision}, batch {bs}", models, batch_size=bs, precision=precision, steps=20, repeats=3,
                    lrn_share=bs == 256)
        run("step, bf16, batch 256, CUDA graphs", models, batch_size=256, precision="bf16", cuda_graphs=True,
            steps=20, repeats=3, lrn_share=False)
        run("step, bf16, batch 256, torch.compile", models, batch_size=256, precision="bf16", compile=True,
            steps=20, warmup=3, repeats=3, lrn_share=False)
        run("end to end, fp32, batch 256", models, batch_size=256, precision="fp32", data=str(packed), steps=20,
            repeats=3, lrn_share=False)
        ddp = None
        if torch.cuda.device_count() >= 2 and left() > 60:
            out = Path(tmp) / "ddp"
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "alexnet",
                   "train", "--model", "alexnet_tv", "--data", str(packed), "--out", str(out), "--epochs", "2",
                   "--batch-size", "512", "--precision", "bf16", "--workers", str(workers // 2)]
            env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src")}
            r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=max(30, left()))
            if r.returncode == 0:
                metrics = list(csv.DictReader(open(out / "metrics.csv")))
                ddp = float(metrics[-1]["images_per_sec"])  # the second epoch: started and warm
            else:
                notes.append(f"DDP failed: {r.stderr.strip().splitlines()[-1][:200] if r.stderr.strip() else r.returncode}")
    total = time.perf_counter() - t0

    def f(v: object, fmt: str = "{:,.0f}") -> str:
        return "—" if v is None else fmt.format(v)

    lines = [
        f"# GPU training throughput: {card}",
        "",
        f"{time.strftime('%Y-%m-%d')}; torch {torch.__version__}, CUDA {torch.version.cuda}, "
        f"{torch.cuda.device_count()} GPU(s), {os.cpu_count()} CPU cores; command: `benchmarks/gpu.sh` "
        f"({total:.0f} s in all, {prep:.0f} s of it generating the data). Images/s, median of 3 runs of 20 steps.",
        "",
        "| configuration | model | batch | precision | step (synthetic) | LRN share | end to end | "
        "torchvision reference | end to end / reference | step FLOP/s of matmul |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['label']} | `{r['model']}` | {r['batch_size']} | {r['precision']} | "
                     f"{f(r['step_images_per_sec'])} | {f(r['lrn_share'], '{:.0%}')} | {f(r['images_per_sec'])} | "
                     f"{f(r['baseline_images_per_sec'])} | {f(r['ratio'], '{:.1f}x')} | "
                     f"{f(r['step_flops_fraction'], '{:.0%}')} |")
    if ddp is not None:
        lines += ["", f"2-process DDP (torchrun, `alexnet_tv`, bf16, total batch 512, second epoch of {args.images:,} "
                      f"images from `metrics.csv`): {ddp:,.0f} images/s."]
    if rows:
        lines += ["", f"bf16 matmul on this card: {rows[0]['matmul_flops'] / 1e12:,.0f} TFLOP/s (8192x8192)."]
    lines += [""] + [f"- {n}" for n in notes]
    text = "\n".join(lines) + "\n"
    print(text)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in card).strip("-").lower()
    (out_dir / f"gpu-{name}.md").write_text(text)
    (out_dir / f"gpu-{name}.json").write_text(json.dumps({"rows": rows, "ddp_images_per_sec": ddp, "notes": notes},
                                                        indent=1) + "\n")
    print(f"wrote {out_dir / f'gpu-{name}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
