"""Loader throughput: the packed format against torchvision's ImageFolder pipeline.

    python benchmarks/loader.py [--data DIR] [--images 2000] [--json]

Without --data it builds a folder of photo-sized JPEGs first: no ImageNet here, so CIFAR-10
images from ../shared/data are upscaled to 500x375 (about the average ImageNet training image)
and saved as JPEG quality 90, which makes their decoding cost that of real photos of that size.
Then it runs ``alexnet bench loader`` on that folder and appends the result to
benchmarks/results/loader.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from alexnet.bench import bench_loader
from alexnet.data.datasets import list_folder, resolve_folder

HERE = Path(__file__).resolve().parent


def photo_folder(dst: Path, data_root: str, n: int) -> Path:
    src = resolve_folder(Path(data_root) / "cifar10" / "cifar10-jpeg.tar.gz")
    samples, classes = list_folder(src, "train")
    per_class = max(1, n // len(classes))
    seen: dict[int, int] = {}
    for path, label in samples:
        if seen.get(label, 0) >= per_class:
            continue
        seen[label] = seen.get(label, 0) + 1
        out = dst / "train" / classes[label] / Path(path).name
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.open(path).convert("RGB").resize((500, 375), Image.BICUBIC).save(out, quality=90)
    return dst


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="an image folder of real photos (default: build one, see above)")
    p.add_argument("--data-root", default=os.environ.get("ALEXNET_DATA_ROOT", "../shared/data"))
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="alexnet-loader-") as tmp:
        folder = Path(args.data) if args.data else photo_folder(Path(tmp) / "photos", args.data_root, args.images)
        r = bench_loader(str(folder), packed=str(Path(tmp) / "packed"))
    if args.json:
        print(json.dumps(r))
    source = args.data or f"{r['train_images']} CIFAR-10 images upscaled to 500x375, JPEG q90"
    text = (
        f"## {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n\n"
        f"Data: {source}. Batch {r['batch_size']}, {r['workers']} workers, median of "
        f"{len(r['runs_packed'])} runs of {r['batches_per_run']} batches.\n\n"
        "| pipeline | images/s | disk |\n| --- | --- | --- |\n"
        f"| torchvision ImageFolder + RandomResizedCrop + flip + ToTensor + Normalize | "
        f"{r['torchvision_images_per_sec']:.0f} | {r['jpeg_bytes'] / 1e6:.1f} MB (JPEG) |\n"
        f"| packed (`alexnet prepare`, 256x256) + batch crop and flip (uint8; normalised on the device) | "
        f"{r['images_per_sec']:.0f} | {r['packed_bytes'] / 1e6:.1f} MB (raw) |\n"
        f"| the same, normalised on the CPU as well | {r['packed_normalised_images_per_sec']:.0f} | |\n\n"
        f"Speed-up: {r['speedup']:.1f}x ({r['speedup_normalised']:.1f}x with CPU normalisation). "
        f"Runs: torchvision {[round(x) for x in r['runs_torchvision']]}, "
        f"packed {[round(x) for x in r['runs_packed']]}, "
        f"packed + normalisation {[round(x) for x in r['runs_packed_normalised']]}.\n\n"
    )
    print(text)
    (HERE / "results").mkdir(exist_ok=True)
    with open(HERE / "results" / "loader.md", "a") as fh:
        fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
