"""``alexnet bench``: benchmarks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import UserError


def add_parser(sub: Any) -> None:
    b = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="what", required=True, metavar="WHAT")
    bl = b.add_parser("loader", help="packed format against torchvision's ImageFolder pipeline, images/s")
    bl.add_argument("--data", required=True, metavar="DIR", help="an image folder (train/ with class folders)")
    bl.add_argument("--packed", metavar="DST", help="where to pack it (default: a temporary folder)")
    bl.add_argument("--batch-size", type=int, default=128)
    bl.add_argument("--workers", type=int, default=2)
    bl.add_argument("--batches", type=int, default=20, help="batches timed per run")
    bl.add_argument("--repeats", type=int, default=3, help="runs of each side, alternating; medians reported")
    bl.add_argument(
        "--jpeg",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also pack it as JPEG shards (prepare --format jpeg, both shapes) and time them (default: on)",
    )
    bl.add_argument(
        "--quality",
        type=int,
        nargs="+",
        default=[95, 90],
        metavar="Q",
        help="JPEG qualities whose sizes are measured; the first is also timed (default: 95 90)",
    )
    bl.add_argument("--json", action="store_true", help="print one JSON object")
    bl.set_defaults(func=run_loader)
    bt = b.add_parser(
        "train",
        help="training images/s: the step on synthetic data, end to end, torchvision's reference",
        description="Training throughput of one or more models: the training step on synthetic data "
        "already on the device (the ceiling), the same without response normalisation (the LRN's "
        "share), end to end from --data through the training loop's input pipeline, and "
        "torchvision's reference style on --jpeg-dir; the arms interleaved, medians reported.",
    )
    bt.add_argument(
        "--model", nargs="+", default=["alexnet"], metavar="NAME", help="one or more models (default: alexnet)"
    )
    bt.add_argument("--batch-size", type=int, default=64)
    bt.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="auto (the default, as alexnet train's): bf16 on a GPU that has it, else fp32",
    )
    bt.add_argument("--compile", action="store_true", help="torch.compile the network")
    bt.add_argument(
        "--compile-mode",
        default="default",
        choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
    )
    bt.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    bt.add_argument("--cuda-graphs", action="store_true", help="replay the forward+backward as a CUDA graph")
    bt.add_argument("--data", metavar="SPEC", help="a packed dataset (or any --data SPEC) for the end-to-end rate")
    bt.add_argument("--jpeg-dir", metavar="DIR", help="an image folder for torchvision's reference pipeline")
    bt.add_argument("--steps", type=int, default=5, help="steps timed per run")
    bt.add_argument("--warmup", type=int, default=2, help="steps before the first timed run")
    bt.add_argument("--repeats", type=int, default=3, help="runs of each arm, interleaved; medians reported")
    bt.add_argument("--workers", type=int, default=2, help="loader threads / processes (the reference's too)")
    bt.add_argument("--device", default="auto")
    bt.add_argument("--json", action="store_true", help="print one JSON object (a list for several models)")
    bt.set_defaults(func=run_train)


def run_loader(args: argparse.Namespace) -> int:
    from ..bench import bench_loader

    for flag, v in (("--batch-size", args.batch_size), ("--batches", args.batches), ("--repeats", args.repeats)):
        if v < 1:
            raise UserError(f"{flag}: must be at least 1, not {v}")
    if args.workers < 0:
        raise UserError(f"--workers: must be at least 0, not {args.workers}")
    for q in args.quality:
        if not 1 <= q <= 100:
            raise UserError(f"--quality: must be in 1..100, not {q}")
    if not Path(args.data).is_dir():
        raise UserError(f"--data {args.data}: not a folder")
    r = bench_loader(
        args.data,
        packed=args.packed,
        batch_size=args.batch_size,
        workers=args.workers,
        batches=args.batches,
        repeats=args.repeats,
        jpeg=args.jpeg,
        qualities=tuple(args.quality),
    )
    if args.json:
        print(json.dumps(r))
        return 0
    print(
        f"training batches of augmented 224x224 crops, batch {r['batch_size']}, {r['workers']} workers, "
        f"{r['train_images']:,} images, median of {len(r['runs_packed'])} runs of {r['batches_per_run']} batches:"
    )
    print(
        f"  torchvision ImageFolder + RandomResizedCrop: {r['torchvision_images_per_sec']:8.0f} img/s  "
        f"({r['jpeg_bytes'] / 1e6:.1f} MB of JPEGs)"
    )
    print(
        f"  packed (alexnet prepare) + batch crops:     {r['images_per_sec']:8.0f} img/s  "
        f"({r['packed_bytes'] / 1e6:.1f} MB on disk; uint8, normalised on the device)"
    )
    print(f"  the same, normalised on the CPU as well:    {r['packed_normalised_images_per_sec']:8.0f} img/s")
    print(f"  speed-up: {r['speedup']:.1f}x ({r['speedup_normalised']:.1f}x with CPU normalisation)")
    if "jpeg_sizes" in r:
        q = r["jpeg_quality_timed"]
        print(
            f"  jpeg square q{q} + batch crops:            {r['jpeg_square_images_per_sec']:8.0f} img/s  "
            f"({r['jpeg_square_speedup']:.1f}x torchvision's; decoded by {r['decoder']})"
        )
        print(
            f"  jpeg shorter q{q} + RandomResizedCrop:     {r['jpeg_shorter_rrc_images_per_sec']:8.0f} img/s  "
            f"({r['jpeg_shorter_rrc_speedup']:.1f}x torchvision's)"
        )
        print(
            f"  (one core decodes the square q{q} form at {r['jpeg_square_decode_one_core_images_per_sec']:,.0f} img/s)"
        )
        print("bytes per image, and ImageNet's 1,281,167 training images in that form:")
        print(f"  raw 256x256:   {r['raw_bytes_per_image']:9,.0f} B  {r['raw_imagenet_gb']:6.1f} GB")
        for name, v in r["jpeg_sizes"].items():
            print(f"  {name + ':':14s} {v['bytes_per_image']:9,.0f} B  {v['imagenet_gb']:6.1f} GB")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from ..bench import bench_train

    for flag, v in (("--batch-size", args.batch_size), ("--steps", args.steps), ("--repeats", args.repeats)):
        if v < 1:
            raise UserError(f"{flag}: must be at least 1, not {v}")
    if args.jpeg_dir and not Path(args.jpeg_dir).is_dir():
        raise UserError(f"--jpeg-dir {args.jpeg_dir}: not a folder")
    results = bench_train(
        args.model,
        batch_size=args.batch_size,
        precision=args.precision,
        compile=args.compile,
        compile_mode=args.compile_mode,
        channels_last=args.channels_last,
        cuda_graphs=args.cuda_graphs,
        data=args.data,
        jpeg_dir=args.jpeg_dir,
        steps=args.steps,
        warmup=args.warmup,
        repeats=args.repeats,
        device=args.device,
        workers=args.workers,
        log=(lambda s: None) if args.json else None,
    )
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results))
        return 0
    r0 = results[0]
    print(
        f"training images/s, batch {r0['batch_size']}, {r0['precision']}, channels_last={r0['channels_last']}, "
        f"compile={r0['compile']}, cuda_graphs={r0['cuda_graphs']}; {r0['device']}, torch {r0['torch']}; "
        f"median of {r0['repeats']} runs of {r0['steps']} steps"
    )

    def f(v: Any, fmt: str = "{:,.1f}") -> str:
        return "—" if v is None else fmt.format(v)

    print(
        "| model | step (synthetic) | without LRN | LRN share | end to end | end to end / step | "
        "torchvision reference | ratio | step FLOP/s of matmul |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| `{r['model']}` | {f(r['step_images_per_sec'])} | {f(r['step_without_lrn_images_per_sec'])} | "
            f"{f(r['lrn_share'], '{:.0%}')} | {f(r['images_per_sec'])} | {f(r['end_to_end_over_step'], '{:.0%}')} | "
            f"{f(r['baseline_images_per_sec'])} | {f(r['ratio'], '{:.2f}x')} | "
            f"{f(r['step_flops_fraction'], '{:.0%}')} |"
        )
    print(f"matmul: {r0['matmul_flops'] / 1e9:,.0f} GFLOP/s ({r0['precision']}, {r0['matmul_n']} x {r0['matmul_n']})")
    return 0
