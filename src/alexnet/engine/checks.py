"""What is checked before any work: each a one-line error naming the flag, not a traceback later."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config import TrainConfig
from ..data.datasets import DataSpec
from ..data.shards.reader import ShardDataset
from ..data.transforms import EvalTransform
from ..errors import UserError, user_path
from ..models import model_info


def check_out_outside_data(cfg: TrainConfig) -> None:
    """A run folder inside the dataset's own folder would become part of the dataset."""
    spec = DataSpec.parse(cfg.data)
    root = user_path(spec.root, "--data")
    if not root.exists():
        return
    data_dir = root.resolve() if root.is_dir() else root.resolve().parent
    out = user_path(cfg.out, "--out").resolve()
    if out == data_dir or data_dir in out.parents:
        raise UserError(f"--out {cfg.out}: inside the dataset's folder {data_dir}; put the run somewhere else")


def check_input_size(model: nn.Module, cfg: TrainConfig, transform: EvalTransform) -> None:
    """One forward pass of a zero image before any work: a crop the network cannot take fails here
    with the option that fits, not in the first step with a matrix-shape traceback."""
    s = transform.input_size
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, transform.channels, s, s, device=next(model.parameters()).device))
    except RuntimeError as e:
        info = model_info(cfg.model)
        hint = (
            f"pass --model-opt input_size={s} (the network is built for {info.input_size}x{info.input_size})"
            if "input_size" in info.options()
            else f"use --crop-size {info.input_size - 2 * cfg.pad}"
        )
        raise UserError(
            f"--crop-size {transform.crop_size} (input {s}x{s}): {cfg.model} cannot take it; {hint}"
            f" ({str(e).splitlines()[0][:120]})"
        ) from None
    finally:
        model.train()


def check_fast_paths(cfg: TrainConfig, device: torch.device, dinfo: Any) -> None:
    check_decode_device(cfg, device)
    if cfg.cuda_graphs:
        if device.type != "cuda":
            raise UserError(f"--cuda-graphs needs a CUDA device (this run is on {device})")
        if dinfo.enabled:
            raise UserError(
                "--cuda-graphs: one process only (under torchrun use --compile --compile-mode reduce-overhead)"
            )
        if cfg.compile:
            raise UserError(
                "--cuda-graphs with --compile: use --compile-mode reduce-overhead, which captures graphs itself"
            )
        if cfg.accumulate > 1:
            raise UserError("--cuda-graphs with --accumulate: not supported (the captured step is one whole batch)")


def check_batch_split(cfg: TrainConfig, world_size: int) -> None:
    """``--batch-size`` is the total over the processes, split again into ``--accumulate`` micro-batches."""
    if cfg.batch_size % (world_size * cfg.accumulate):
        raise UserError(
            f"--batch-size {cfg.batch_size} (the total over all processes) is not divisible by the "
            f"{world_size} processes x {cfg.accumulate} accumulation steps"
        )


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (``MemAvailable``), None where it cannot say."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def input_memory(cfg: TrainConfig, transform: EvalTransform, micro_batch: int) -> int:
    """Bytes the input pipeline holds at once: ``prefetch`` stored uint8 batches ahead of the step (one
    more in the step), and the step's float batch with the augmentation's temporaries (about three)."""
    c, s, crop = transform.channels, transform.image_size, transform.input_size
    return (cfg.prefetch + 1) * micro_batch * c * s * s + 3 * micro_batch * c * crop * crop * 4


def check_memory(cfg: TrainConfig, transform: EvalTransform, micro_batch: int, available: int | None) -> None:
    """Refuse, before anything is allocated, a run whose input pipeline alone cannot fit the memory
    left (the activations come on top): the key to change named in one line."""
    need = input_memory(cfg, transform, micro_batch)
    if available is not None and need > available:
        raise UserError(
            f"batch-size {cfg.batch_size} with prefetch {cfg.prefetch} and {transform.image_size}x"
            f"{transform.image_size} images: the input pipeline alone needs {need / 2**30:,.1f} GB, more than "
            f"the {available / 2**30:,.1f} GB this machine has free; lower batch-size, prefetch or image-size"
        )


def check_decode_device(cfg: TrainConfig, device: torch.device) -> None:
    """--decode gpu decodes on a CUDA device; anywhere else it is refused before any work."""
    if cfg.decode == "gpu" and device.type != "cuda":
        raise UserError(
            f"--decode gpu needs a CUDA device (this run is on {device}); --decode cpu decodes in the loader's workers"
        )


def decode_on_device(cfg: TrainConfig, datasets: list[Any]) -> None:
    """--decode gpu: the datasets' members are read as bytes and decoded on the device (JPEG shards only)."""
    if cfg.decode != "gpu":
        return
    for ds in datasets:
        if ds is None:
            continue
        if not isinstance(ds, ShardDataset):
            raise UserError(
                f"--decode gpu: decodes JPEG shards (alexnet prepare SRC DST --format jpeg); --data {cfg.data} "
                "is not a shard set"
            )
        ds.encoded = True
