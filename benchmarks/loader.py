"""Loader throughput and size: raw packs and JPEG shards against torchvision's ImageFolder pipeline.

    python benchmarks/loader.py [--data DIR] [--images 4000] [--json]

Without --data it measures two stand-ins in turn (no ImageNet here), built from ../shared/data:
- photos: CIFAR-10 images upscaled to 500x375 (about the average ImageNet training image) and saved as
  JPEG quality 90, so that decoding the originals costs what it costs for photos of that size;
- cifar: the CIFAR-10 tree's own 32x32 JPEGs (prepare scales them up to 256).
Upscaled CIFAR images are smooth: they compress and decode far more easily than real photographs, so
the JPEG forms' sizes here are lower bounds and their rates upper bounds. Each runs ``alexnet bench
loader`` (raw pack, jpeg square with the batch's random 224 crop, jpeg shorter with RandomResizedCrop
at decode, torchvision's ImageFolder + RandomResizedCrop; all with 2 workers) and the section is
appended to benchmarks/results/loader.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _results import append_results
from PIL import Image

from alexnet.bench import bench_loader
from alexnet.data.datasets import list_folder, resolve_folder

HERE = Path(__file__).resolve().parent


def stand_in(dst: Path, data_root: str, n: int, size: tuple[int, int] | None) -> Path:
    """``n`` CIFAR-10 training images, as many per class, in ``dst/train/CLASS/``: upscaled to ``size``
    and saved at JPEG quality 90, or (None) the tree's files copied as they are."""
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
        if size is None:
            shutil.copyfile(path, out)
        else:
            Image.open(path).convert("RGB").resize(size, Image.BICUBIC).save(out, quality=90)
    return dst


KEEPS = {
    "raw": "the central 256x256, as pixels",
    "square": "the central 256x256, as JPEG",
    "shorter": "the whole image, shorter side 256 (aspect capped at 2)",
}


def section(r: dict[str, Any], source: str) -> str:
    q = r["jpeg_quality_timed"]
    tv = r["torchvision_images_per_sec"]
    sizes = r["jpeg_sizes"]
    rows = [
        f"| torchvision ImageFolder + RandomResizedCrop + flip + ToTensor + Normalize | the original JPEGs | "
        f"{r['jpeg_originals_bytes_per_image'] / 1e3:.1f} KB | | {tv:,.0f} | 1.0x |",
        f"| raw pack (`prepare`), batch random 224 crop + flip | {KEEPS['raw']} | "
        f"{r['raw_bytes_per_image'] / 1e3:.1f} KB | {r['raw_imagenet_gb']:.0f} GB | {r['images_per_sec']:,.0f} | "
        f"{r['speedup']:.1f}x |",
    ]
    for name, v in sizes.items():
        shape, quality = name.split("-q")
        timed = int(quality) == q
        if shape == "square":
            what = f"jpeg square q{quality}, batch random 224 crop + flip"
            rate, ratio = r["jpeg_square_images_per_sec"], r["jpeg_square_speedup"]
        else:
            what = f"jpeg shorter q{quality}, RandomResizedCrop at decode + flip"
            rate, ratio = r["jpeg_shorter_rrc_images_per_sec"], r["jpeg_shorter_rrc_speedup"]
        rows.append(
            f"| {what} | {KEEPS[shape]} | {v['bytes_per_image'] / 1e3:.1f} KB | {v['imagenet_gb']:.1f} GB | "
            + (f"{rate:,.0f} | {ratio:.1f}x |" if timed else "(not timed) | |")
        )
    runs = {
        "torchvision": r["runs_torchvision"],
        "raw": r["runs_packed"],
        "jpeg square": r["runs_jpeg_square"],
        "jpeg shorter + RRC": r["runs_jpeg_shorter_rrc"],
    }
    return (
        f"### {source}\n\n"
        f"{r['train_images']:,} images; batch {r['batch_size']}, {r['workers']} workers, median of "
        f"{len(r['runs_packed'])} alternating runs of {r['batches_per_run']} batches; JPEG decoded by "
        f"{r['decoder']}. ImageNet size: bytes per image x 1,281,167.\n\n"
        "| pipeline | keeps | per image | ImageNet | images/s | vs torchvision |\n"
        "| --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows) + "\n\n"
        f"One core decodes the square q{q} form at {r['jpeg_square_decode_one_core_images_per_sec']:,.0f} img/s "
        "(read by index and decoded, nothing else).\n\n"
        "Runs (images/s): " + "; ".join(f"{k} {[round(x) for x in v]}" for k, v in runs.items()) + ".\n\n"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="an image folder of real photos (default: the two stand-ins, see above)")
    p.add_argument("--data-root", default=os.environ.get("ALEXNET_DATA_ROOT", "../shared/data"))
    p.add_argument("--images", type=int, default=5000, help="images per stand-in (39 batches of 128 an epoch)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    results: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="alexnet-loader-") as tmp:
        if args.data:
            inputs = [(args.data, Path(args.data))]
        else:
            inputs = [
                (
                    "photo stand-ins: CIFAR-10 upscaled to 500x375, JPEG q90",
                    stand_in(Path(tmp) / "photos", args.data_root, args.images, (500, 375)),
                ),
                ("the CIFAR-10 tree (32x32 JPEGs)", stand_in(Path(tmp) / "cifar", args.data_root, args.images, None)),
            ]
        for source, folder in inputs:
            print(f"measuring {source} ...", file=sys.stderr)
            results.append((source, bench_loader(str(folder), packed=str(Path(tmp) / "packed"))))
            shutil.rmtree(Path(tmp) / "packed", ignore_errors=True)
    if args.json:
        print(json.dumps(dict(results)))
    text = f"## {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n\n"
    text += "".join(section(r, source) for source, r in results)
    append_results(HERE / "results" / "loader.md", [text.rstrip("\n")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
