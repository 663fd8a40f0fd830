"""CPU training throughput, the README's "Performance" table: ``alexnet bench train`` on this machine.

    python benchmarks/train_throughput.py [--data-root ../shared/data] [--steps 8] [--repeats 3]

Builds 1,000 photo-sized JPEGs (CIFAR-10 images upscaled to 500x375, JPEG quality 90: no ImageNet
here; see benchmarks/loader.py) and packs them with ``alexnet prepare``, then measures, in one run
with the arms interleaved: ``alexnet`` and ``alexnet_tv`` in bf16 and fp32 at batch 64 (the step on
synthetic data, the step without LRN, end to end from the packed copy, and torchvision's reference
style on the JPEGs), and ``cifar_18pct`` in fp32 at batch 128 on CIFAR-10. Appends the tables to
benchmarks/results/train-cpu.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from loader import photo_folder  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=os.environ.get("ALEXNET_DATA_ROOT", "../shared/data"))
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    alexnet = [sys.executable, "-m", "alexnet"]
    out = [f"## {time.strftime('%Y-%m-%d %H:%M')}, `python benchmarks/train_throughput.py`\n"]
    with tempfile.TemporaryDirectory(prefix="alexnet-train-bench-") as tmp:
        photos = photo_folder(Path(tmp) / "photos", args.data_root, 1000)
        subprocess.run(
            alexnet + ["prepare", str(photos), str(Path(tmp) / "packed"), "--workers", "2"],
            check=True,
            capture_output=True,
        )
        runs = [
            [
                "--model",
                "alexnet",
                "alexnet_tv",
                "--precision",
                "bf16",
                "--batch-size",
                "64",
                "--data",
                str(Path(tmp) / "packed"),
                "--jpeg-dir",
                str(photos),
            ],
            [
                "--model",
                "alexnet",
                "alexnet_tv",
                "--precision",
                "fp32",
                "--batch-size",
                "64",
                "--data",
                str(Path(tmp) / "packed"),
                "--jpeg-dir",
                str(photos),
            ],
            [
                "--model",
                "cifar_18pct",
                "--precision",
                "fp32",
                "--batch-size",
                "128",
                "--data",
                f"cifar10:{args.data_root}",
            ],
        ]
        for extra in runs:
            cmd = alexnet + ["bench", "train", *extra, "--steps", str(args.steps), "--repeats", str(args.repeats)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                print(r.stderr, file=sys.stderr)
                return r.returncode
            shown = " ".join(a if not a.startswith("/") else Path(a).name.upper() for a in cmd[3:])
            out.append(f"`alexnet {shown}`\n\n{r.stdout}")
            print(out[-1], flush=True)
    (HERE / "results").mkdir(exist_ok=True)
    with open(HERE / "results" / "train-cpu.md", "a") as fh:
        fh.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
