"""``alexnet bench loader``: training batches per second from a packed dataset against
torchvision's standard ImageFolder pipeline, on the same images, batch size and worker count.

Both sides produce batches of randomly cropped and flipped 224x224 images with their labels.
- torchvision: ``ImageFolder`` + PIL decode + ``RandomResizedCrop(224)`` + ``RandomHorizontalFlip``
  + ``ToTensor`` + ``Normalize`` in ``DataLoader`` worker processes: float32 batches.
- packed: ``alexnet prepare``'s memory map, batches gathered in the main process and cropped and
  flipped as whole uint8 batches (``random_crop``), with ``workers`` threads. Our training loop
  normalises after the transfer to the device (a GPU does that in microseconds, and the transfer
  moves 4x fewer bytes), so the headline figure stops at the uint8 batch;
  ``packed_normalised_images_per_sec`` adds the normalisation on the CPU as well.
- jpeg (``alexnet prepare --format jpeg``), read by index through training's own loader: JPEGs
  decoded in ``workers`` processes (simplejpeg where installed), then either the ``square`` form's
  batch crop and flip as above, or the ``shorter`` form cropped where it is decoded
  (RandomResizedCrop, boxes drawn per image) and flipped. Also the bytes per image of each form and
  quality and the projected size of ImageNet's 1,281,167 training images in it.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch.utils.data import DataLoader, RandomSampler
from torchvision import datasets, transforms

from .config import TrainConfig
from .data.datasets import resolve_folder
from .data.loader import PREFETCH, BatchLoader, ResizedCrops
from .data.packed.reader import is_packed, load_packed
from .data.packed.writer import prepare
from .data.pipeline import Prefetcher, gather_threads
from .data.shards.codec import decoder_name as codec_name
from .data.shards.reader import load_shards
from .data.shards.writer import prepare_shards
from .data.transforms import IMAGENET_MEAN as MEAN
from .data.transforms import IMAGENET_STD as STD
from .data.transforms import EvalTransform, normalize, random_crop
from .distributed import DistInfo
from .engine.checks import check_fast_paths
from .engine.data import build_data, make_augment
from .engine.optim import make_optimizer
from .engine.step import TrainStep
from .errors import UserError
from .models import create_model, model_info
from .models.summary import model_summary
from .runtime import (
    apply_kernel_settings,
    cpu_model,
    keep_freed_memory,
    kernel_settings,
    pick_device,
    resolve_precision,
    slow_half_precision,
)


def _rate(batches: Iterable[Any], n_batches: int, warmup: int = 2) -> float:
    """Images per second over ``n_batches`` batches after ``warmup`` (workers started, caches warm)."""
    it = iter(batches)
    for _ in range(warmup):
        next(it)
    t0, seen = time.perf_counter(), 0
    for _ in range(n_batches):
        x, y = next(it)[:2]
        seen += len(y)
    return seen / (time.perf_counter() - t0)


def torchvision_rate(folder: Path, batch_size: int, workers: int, n_batches: int) -> float:
    ref = ReferenceLoader(folder, batch_size, workers, pin=False)
    return _rate(ref.loader, n_batches, warmup=2 + ref.prefetched)  # past what the workers held ready


def packed_rate(packed: Path, batch_size: int, workers: int, n_batches: int, normalise: bool = False) -> float:
    """Images/s of training's own input pipeline over a packed dataset: the Prefetcher's gather threads
    (from the memory map, read ahead), then a random 224 crop and flip (and normalisation) per batch."""
    ds = load_packed(packed, "train")
    t = EvalTransform(ds.images.shape[-1], 224, 0, 3, MEAN, STD)
    loader = BatchLoader(ds, batch_size, shuffle=True)
    pre = Prefetcher(loader, torch.device("cpu"), depth=3, threads=gather_threads())
    gen = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, workers))

    def batches() -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        epoch = 0
        while True:
            loader.set_epoch(epoch)
            for x, y in pre:
                x = random_crop(x, 224, generator=gen, flip=True)
                yield (normalize(x, t.mean, t.std, channels_last=True) if normalise else x), y
            epoch += 1

    try:
        return _rate(batches(), n_batches)
    finally:
        pre.close()
        torch.set_num_threads(threads)


def shards_rate(root: Path, batch_size: int, workers: int, n_batches: int, rrc: bool = False) -> float:
    """Images/s of training's input pipeline over a JPEG shard set: the Prefetcher over its loader, whose
    ``workers`` processes decode into the shared batch slots; ``rrc``: RandomResizedCrop to 224 where
    each image is decoded, else the batch's random 224 crop; then the flip. uint8 batches, normalised on
    the device as in training."""
    ds = load_shards(root, "train")
    loader = BatchLoader(ds, batch_size, shuffle=True, workers=workers)
    if rrc:
        loader.crops = ResizedCrops(size=224)
    pre = Prefetcher(loader, torch.device("cpu"), depth=3)
    gen = torch.Generator().manual_seed(0)

    def batches() -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        epoch = 0
        while True:
            loader.set_epoch(epoch)
            for x, y in pre:
                yield random_crop(x, 224, generator=gen, flip=True), y
            epoch += 1

    # past what the workers and the Prefetcher's queue held ready
    return _rate(batches(), n_batches, warmup=2 + workers * PREFETCH + pre.depth)


def decode_rate(root: Path, n: int = 1000) -> float:
    """Images/s one core decodes from a JPEG shard set (read by index and decoded, nothing else)."""
    ds = load_shards(root, "train")
    n = min(n, len(ds))
    ds.decode(0)
    t0 = time.perf_counter()
    for i in range(n):
        ds.decode(i)
    return n / (time.perf_counter() - t0)


# ImageNet's training images (ILSVRC2012), for the projected sizes
IMAGENET_TRAIN = 1_281_167


def shard_bytes(root: Path) -> int:
    """The bytes of a shard set's tar files (what a node must hold; the indexes are 48 bytes an image)."""
    return sum(f.stat().st_size for f in root.glob("train-*.tar"))


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def bench_loader(
    data: str,
    *,
    packed: str | None = None,
    batch_size: int = 128,
    workers: int = 2,
    batches: int = 20,
    repeats: int = 3,
    jpeg: bool = True,
    qualities: tuple[int, ...] = (95, 90),
) -> dict[str, Any]:
    """Measure the pipelines ``repeats`` times, alternating, and report the medians. ``jpeg``: also
    pack the folder as JPEG shards (both shapes, each of ``qualities``; the first is timed)."""
    src = Path(data)
    if is_packed(src):
        raise UserError(f"--data {data}: give the image folder (the JPEGs); the packed copy goes in --packed")
    folder = resolve_folder(src)
    tmp = None
    if packed is None:
        tmp = tempfile.TemporaryDirectory(prefix="alexnet-bench-")
        packed = tmp.name
    pk = Path(packed)
    cores = max(1, os.cpu_count() or 1)
    prepare(folder, pk, size=256, workers=cores, progress=False)
    shards_tmp = tempfile.TemporaryDirectory(prefix="alexnet-bench-jpeg-")
    forms: dict[str, Path] = {}
    sizes: dict[str, dict[str, float]] = {}
    try:
        if jpeg:
            for shape in ("square", "shorter"):
                for q in qualities:
                    name = f"{shape}-q{q}"
                    forms[name] = Path(shards_tmp.name) / name
                    prepare_shards(folder, forms[name], shape=shape, quality=q, workers=cores, progress=False)
                    b = shard_bytes(forms[name]) / len(load_shards(forms[name], "train"))
                    sizes[name] = {"bytes_per_image": b, "imagenet_gb": b * IMAGENET_TRAIN / 1e9}
        tv, ours, ours_norm = [], [], []
        square, shorter, decode = [], [], []

        def alone(rate: Any, *args: Any, **kw: Any) -> float:
            # the arm before may leave its loader's workers and threads to the garbage collector (reference
            # cycles): measured, they took a third of the next arm's rate until collected
            gc.collect()
            return float(rate(*args, **kw))

        for _ in range(repeats):
            tv.append(alone(torchvision_rate, folder, batch_size, workers, batches))
            ours.append(alone(packed_rate, pk, batch_size, workers, batches))
            ours_norm.append(alone(packed_rate, pk, batch_size, workers, batches, normalise=True))
            if jpeg:
                square.append(alone(shards_rate, forms[f"square-q{qualities[0]}"], batch_size, workers, batches))
                shorter.append(
                    alone(shards_rate, forms[f"shorter-q{qualities[0]}"], batch_size, workers, batches, rrc=True)
                )
                decode.append(alone(decode_rate, forms[f"square-q{qualities[0]}"]))
        tv_rate = statistics.median(tv)
        jpeg_result: dict[str, Any] = {}
        if jpeg:
            jpeg_result = {
                "jpeg_quality_timed": qualities[0],
                "jpeg_square_images_per_sec": statistics.median(square),
                "jpeg_square_speedup": statistics.median(square) / tv_rate,
                "jpeg_shorter_rrc_images_per_sec": statistics.median(shorter),
                "jpeg_shorter_rrc_speedup": statistics.median(shorter) / tv_rate,
                "jpeg_square_decode_one_core_images_per_sec": statistics.median(decode),
                "runs_jpeg_square": square,
                "runs_jpeg_shorter_rrc": shorter,
                "jpeg_sizes": sizes,
            }
        n_train = len(load_packed(pk, "train"))
        jpeg_bytes = folder_bytes(folder / "train")
        raw_per_image = (pk / "train_images.u8").stat().st_size / n_train
        result = {
            "images_per_sec": statistics.median(ours),
            "torchvision_images_per_sec": statistics.median(tv),
            "speedup": statistics.median(ours) / statistics.median(tv),
            "packed_normalised_images_per_sec": statistics.median(ours_norm),
            "speedup_normalised": statistics.median(ours_norm) / statistics.median(tv),
            "runs_packed": ours,
            "runs_packed_normalised": ours_norm,
            "runs_torchvision": tv,
            "batch_size": batch_size,
            "workers": workers,
            "batches_per_run": batches,
            "train_images": n_train,
            "jpeg_bytes": jpeg_bytes,
            "packed_bytes": (pk / "train_images.u8").stat().st_size,
            "raw_bytes_per_image": raw_per_image,
            "raw_imagenet_gb": raw_per_image * IMAGENET_TRAIN / 1e9,
            "jpeg_originals_bytes_per_image": jpeg_bytes / n_train,
            "decoder": codec_name(),
            **jpeg_result,
        }
    finally:
        shards_tmp.cleanup()
        if tmp is not None:
            tmp.cleanup()
    return result


# ------------------------------------------------------------------------------------------ training


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(run_step: Any, steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per step over ``steps`` steps (at least the arm's ``min_steps``) after ``warmup``
    (compilation, allocator, caches) and the arm's ``before_timing``."""
    for _ in range(warmup):
        run_step()
    if hasattr(run_step, "before_timing"):
        run_step.before_timing()
    steps = max(steps, getattr(run_step, "min_steps", 0))
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        run_step()
    _sync(device)
    return (time.perf_counter() - t0) / steps


def probe_size(seconds_for: Any, largest: int, budget: float, smallest: int = 256) -> int:
    """The largest power-of-two size from ``smallest`` up to ``largest`` whose n x n product should take
    at most ``budget`` seconds, from ``seconds_for(n)`` (one product's time) at the sizes tried: doubling
    n multiplies the work by 8, so n doubles while 8x the last time fits the budget."""
    n = smallest
    while n < largest and 8 * seconds_for(n) <= budget:
        n *= 2
    return n


def _product_seconds(device: torch.device, dtype: torch.dtype, n: int, calls: int) -> list[float]:
    """Seconds of each of ``calls`` n x n products on ``device`` (the first pays for the kernel's set-up)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    times = []
    for _ in range(calls):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def matmul_flops(
    device: torch.device, precision: str, n: int | None = None, repeats: int = 5, budget: float = 0.5
) -> tuple[float, int]:
    """FLOP/s of an n x n matrix product in the step's precision on ``device`` (the median of a few),
    and the n it used. By default n is the largest power of two up to 8192 (GPU) or 4096 (CPU) whose
    product takes at most ``budget`` seconds: a CPU without native bf16 emulates it about 100x slower
    than fp32, and there a fixed 4096 x 4096 product took minutes."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    largest = 8192 if device.type == "cuda" else 4096
    n = n or probe_size(lambda k: _product_seconds(device, dtype, k, 2)[-1], largest, budget)
    return 2 * n**3 / statistics.median(_product_seconds(device, dtype, n, repeats + 1)[1:]), n


def _lrn_off(name: str) -> dict[str, Any] | None:
    """The model option that turns its response normalisation off, if it has one that is on."""
    opts = model_info(name).options()
    if opts.get("lrn") is True:
        return {"lrn": False}
    if isinstance(opts.get("lrn"), str) and opts["lrn"] != "none":
        return {"lrn": "none"}
    return None


class _StepBench:
    """A model's training step (the loop's own ``TrainStep``) on synthetic data already on the device."""

    def __init__(self, name: str, cfg: Any, device: torch.device, num_classes: int, options: dict[str, Any]) -> None:
        info = model_info(name)
        self.model = create_model(name, num_classes=num_classes, **options).to(device)
        channels_last = cfg.channels_last and device.type != "mps"
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        precision = resolve_precision(cfg.precision, device)
        scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16" and device.type == "cuda")
        self.step = TrainStep(
            net=self.model,
            model=self.model,
            optimizer=make_optimizer(cfg, self.model, device),
            scaler=scaler,
            cfg=cfg,
            device=device,
            precision=precision,
        )
        s = info.input_size
        full_shape = (cfg.batch_size, info.in_chans, s, s)
        if cfg.compile:
            self.step.accelerate(
                torch.compile(self.model, mode=None if cfg.compile_mode == "default" else cfg.compile_mode), full_shape
            )
        if cfg.cuda_graphs:  # as the training loop does: before any input thread runs
            self.step.capture_graph(full_shape, channels_last)
        g = torch.Generator(device=device).manual_seed(0)
        self.x = torch.randn(cfg.batch_size, info.in_chans, s, s, device=device, generator=g)
        if channels_last:
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.y = torch.randint(0, num_classes, (cfg.batch_size,), device=device, generator=g)
        self.lr = cfg.lr

    def __call__(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        self.step.begin(self.lr)
        self.step.micro(self.x if x is None else x, self.y if y is None else y, 1, True)
        self.step.update()


def _end_to_end(bench: _StepBench, cfg: Any, device: torch.device, built: tuple) -> Any:
    """A callable that trains one step on the next batch of ``cfg.data`` the way ``alexnet train`` does:
    the loader's order, the Prefetcher's background gathers (and copies), augmentation on the device.
    ``built``: ``build_data(cfg)``."""
    train_ds, _, classes, transform = built
    loader = BatchLoader(train_ds, cfg.batch_size, shuffle=True, seed=0, workers=cfg.workers, drop_last=True)
    if len(loader) == 0:
        raise UserError(f"--data {cfg.data}: fewer than --batch-size {cfg.batch_size} training images")
    if cfg.random_resized_crop:
        loader.crops = ResizedCrops(tuple(cfg.rrc_scale), tuple(cfg.rrc_ratio), transform.crop_size)  # type: ignore[arg-type]
    boxes = cfg.random_resized_crop and not getattr(train_ds, "crops_at_decode", False)
    pre = Prefetcher(loader, device, depth=cfg.prefetch, threads=gather_threads())
    augment = make_augment(cfg, train_ds, transform.channels)
    augment.place(device)  # the eigen-decomposition on the device once, not copied every step
    gen = torch.Generator(device=device).manual_seed(0)
    channels_last = cfg.channels_last and device.type != "mps"
    state: dict[str, Any] = {"epoch": 0, "it": None, "b": 0}

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        while True:
            if state["it"] is None:
                loader.set_epoch(state["epoch"])
                state["it"], state["b"] = iter(pre), 0
            try:
                batch = next(state["it"])
                state["b"] += 1
                return batch
            except StopIteration:
                state["epoch"] += 1
                state["it"] = None

    def run_step() -> None:
        x, y = next_batch()
        b = loader.boxes_for(state["b"] - 1, transform.image_size) if boxes else None
        bench(augment(x, transform, gen, channels_last, None, b), y)

    run_step.close = pre.close  # type: ignore[attr-defined]
    return run_step


class ReferenceLoader:
    """torchvision's reference input pipeline: ImageFolder + PIL RandomResizedCrop + flip, DataLoader
    workers, fp32 batches. Its workers start at the first batch asked for, not when it is built (they
    would prefetch while the other arms are timed), and one loader serves every model's reference
    arm (two would hold twice the shared memory: 16 workers x 2 batches of 154 MB each at batch 256)."""

    prefetch_factor = 2

    def __init__(self, folder: Path, batch_size: int, workers: int, pin: bool) -> None:
        tf = transforms.Compose(
            [
                transforms.RandomResizedCrop(224),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize([m / 255 for m in MEAN], [s / 255 for s in STD]),
            ]
        )
        root = folder / "train" if (folder / "train").is_dir() else folder
        ds = datasets.ImageFolder(str(root), tf)
        sampler = RandomSampler(ds, replacement=True, num_samples=10**9)
        self.workers = workers
        self.loader = DataLoader(
            ds,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=pin,
            prefetch_factor=self.prefetch_factor if workers > 0 else None,
        )
        self.it: Any = None

    @property
    def prefetched(self) -> int:
        """Batches the workers hold ready at most: what a timing must drain first and go well past."""
        return self.workers * self.prefetch_factor

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.it is None:
            self.it = iter(self.loader)
        return next(self.it)

    def drain(self) -> None:
        """Take the batches the workers prepared while something else ran, so that a timing that
        follows sees only what the workers produce meanwhile."""
        for _ in range(self.prefetched):
            self.next()


def _torchvision_reference(loader: ReferenceLoader, device: torch.device, num_classes: int) -> Any:
    """torchvision's reference style: its AlexNet on ``loader``'s batches, fp32, SGD with momentum;
    one step per call. ``before_timing`` drains the prefetched batches; ``min_steps`` is twice them."""
    model = torchvision.models.alexnet(num_classes=num_classes).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

    def run_step() -> None:
        x, y = loader.next()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = torch.nn.functional.cross_entropy(model(x), y % num_classes)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    run_step.before_timing = loader.drain  # type: ignore[attr-defined]
    run_step.min_steps = 2 * loader.prefetched  # type: ignore[attr-defined]
    return run_step


def bench_train(
    models: list[str],
    *,
    batch_size: int = 64,
    precision: str = "auto",
    compile: bool = False,
    compile_mode: str = "default",
    channels_last: bool = True,
    cuda_graphs: bool = False,
    data: str | None = None,
    jpeg_dir: str | None = None,
    steps: int = 5,
    warmup: int = 2,
    repeats: int = 3,
    device: str = "auto",
    workers: int = 2,
    lrn_share: bool = True,
    tf32: bool = True,
    log: Any = None,
) -> list[dict[str, Any]]:
    """Training images/s of each model: the step on synthetic data already on the device (the
    ceiling), without its response normalisation (the LRN's share), end to end from ``data`` (the
    training loop's pipeline) and torchvision's reference style on ``jpeg_dir``; every figure the
    median of ``repeats`` runs of ``steps`` steps, the arms interleaved so that they see the same
    machine. Also the matmul rate of the device, and the step's FLOP/s as a fraction of it."""
    say = log or (lambda s: print(s, file=sys.stderr, flush=True))
    dev = pick_device(device)
    keep_freed_memory()  # as `alexnet train` does
    # the kernel choices `alexnet train` makes by default: cuDNN autotuning, TF32 for fp32 matmuls
    apply_kernel_settings(kernel_settings(dev, deterministic=False, tf32=tf32, cudnn_benchmark=True))
    prec = resolve_precision(precision, dev)
    if note := slow_half_precision(prec, dev):
        say(note)
    arms: list[tuple[str, str, Any]] = []  # (model, arm, step callable)
    reference = ReferenceLoader(Path(jpeg_dir), batch_size, workers, dev.type == "cuda") if jpeg_dir else None
    info: dict[str, dict[str, Any]] = {}
    for name in models:
        mi = model_info(name)
        cfg = TrainConfig(
            model=name,
            batch_size=batch_size,
            precision=prec,
            compile=compile,
            compile_mode=compile_mode,
            channels_last=channels_last,
            cuda_graphs=cuda_graphs,
            device=str(dev),
            workers=workers,
            data=data or "",
            normalize="meanstd",
        )
        check_fast_paths(cfg, dev, DistInfo())
        built = build_data(cfg, val=False) if data else None
        classes = len(built[2]) if built else mi.num_classes  # the data's classes for every arm
        bench = _StepBench(name, cfg, dev, classes, {})
        arms.append((name, "step", bench))
        off = _lrn_off(name) if lrn_share else None
        if off:
            arms.append((name, "step_without_lrn", _StepBench(name, cfg, dev, classes, off)))
        if built:
            arms.append((name, "end_to_end", _end_to_end(bench, cfg, dev, built)))
        if reference is not None:
            arms.append((name, "baseline", _torchvision_reference(reference, dev, classes)))
        macs = model_summary(name).macs
        info[name] = {"macs": macs, "classes": classes}
    times: dict[tuple[str, str], list[float]] = {(m, a): [] for m, a, _ in arms}
    for rep in range(repeats):
        for m, a, fn in arms:
            times[(m, a)].append(_timed(fn, steps, warmup if rep == 0 else 1, dev))
            say(f"  run {rep + 1}/{repeats} {m} {a}: {batch_size / times[(m, a)][-1]:.1f} img/s")
    for _, _, fn in arms:
        if hasattr(fn, "close"):
            fn.close()
    flops, flops_n = matmul_flops(dev, prec)
    results = []
    for name in models:
        rate = {a: batch_size / statistics.median(times[(m, a)]) for (m, a) in times if m == name}
        step_flops = 6 * info[name]["macs"]  # forward 2 FLOPs per multiply-add, backward twice the forward
        r: dict[str, Any] = {
            "model": name,
            "batch_size": batch_size,
            "precision": prec,
            "compile": compile,
            "compile_mode": compile_mode,
            "channels_last": channels_last,
            "cuda_graphs": cuda_graphs,
            "images_per_sec": rate.get("end_to_end"),
            "step_images_per_sec": rate["step"],
            "step_without_lrn_images_per_sec": rate.get("step_without_lrn"),
            "lrn_share": (1 - rate["step"] / rate["step_without_lrn"]) if "step_without_lrn" in rate else None,
            "end_to_end_over_step": rate["end_to_end"] / rate["step"] if "end_to_end" in rate else None,
            "baseline_images_per_sec": rate.get("baseline"),
            "ratio": rate["end_to_end"] / rate["baseline"] if "baseline" in rate and "end_to_end" in rate else None,
            "matmul_flops": flops,
            "matmul_n": flops_n,
            "step_flops_per_image": step_flops,
            "step_flops_fraction": rate["step"] * step_flops / flops,
            "runs_seconds_per_step": {a: times[(m, a)] for (m, a) in times if m == name},
            "steps": steps,
            "repeats": repeats,
            "data": data,
            "jpeg_dir": jpeg_dir,
            "workers": workers,
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name(),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "date": time.strftime("%Y-%m-%d"),
        }
        results.append(r)
    return results


def cpu_name() -> str:
    """The CPU as the benchmarks' records name it (``benchmarks/gpu.py`` too)."""
    return f"{cpu_model()} ({os.cpu_count()} cores)"
