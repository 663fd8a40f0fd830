"""Generated data and untrained runs for tests and benchmarks: a run folder whose weights do not
matter, a packed dataset as ``alexnet prepare`` writes it, photo-sized JPEGs.

    run = save_untrained_run(tmp / "run", "cifar_18pct")
    packed = synthetic_packed(tmp / "packed", 2048, val=256)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from alexnet.checkpoint import CheckpointRecord, save_checkpoint
from alexnet.data.packed.format import FORMAT, VERSION, SplitFiles
from alexnet.data.packed.writer import dataset_statistics, write_meta
from alexnet.data.transforms import EvalTransform
from alexnet.models import create_model, model_info


def save_untrained_run(
    folder: str | os.PathLike[str],
    model_name: str,
    *,
    num_classes: int | None = None,
    classes: list[str] | None = None,
    metrics: dict[str, Any] | None = None,
    seed: int = 0,
) -> Path:
    """A run folder (``best.pt``) holding ``model_name`` as initialised (seeded), with the model's
    own input geometry and a plain mean/std transform: what benchmarks of speed and tests of the
    serving and export paths need when the weights do not matter."""
    info = model_info(model_name)
    n = num_classes or (len(classes) if classes else info.num_classes)
    torch.manual_seed(seed)
    pad = 2 if model_name == "lenet5" else 0  # LeNet-5 takes 28x28 digits padded to 32
    crop = info.input_size - 2 * pad
    transform = EvalTransform(
        max(info.image_size, crop), crop, pad, info.in_chans, (120.0,) * info.in_chans, (60.0,) * info.in_chans
    )
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        CheckpointRecord(
            model=create_model(model_name, num_classes=n).state_dict(),
            model_name=model_name,
            num_classes=n,
            classes=classes or [str(i) for i in range(n)],
            eval_transform=transform.to_dict(),
            metrics=metrics or {},
        ),
        out / "best.pt",
    )
    return out


def synthetic_packed(
    dst: str | os.PathLike[str], n: int, *, size: int = 256, classes: int = 100, val: int = 0, seed: int = 0
) -> Path:
    """A packed dataset of ``n`` generated images (smooth random colour fields, so that crops differ)
    with labels, statistics and the format ``alexnet prepare`` writes: throughput measurements
    without a dataset at hand (``benchmarks/gpu.sh``)."""
    root = Path(dst)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [f"class{i:03d}" for i in range(classes)]
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "complete": False,
        "source": "generated",
        "image_size": size,
        "channels": 3,
        "layout": "NHWC",
        "dtype": "uint8",
        "classes": names,
        "class_names": names,
        "splits": {},
    }
    base = torch.nn.functional.interpolate(
        torch.rand(64, 3, 8, 8), size=(size, size), mode="bilinear", align_corners=False
    )
    base = (base * 127).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # 64 smooth templates, NHWC
    noise = rng.integers(0, 32, (16, size, size, 3), dtype=np.uint8)  # reused: generating it is the slow part
    for split, count in (("train", n), ("val", val)):
        if count <= 0:
            continue
        files = SplitFiles.open(root, split, count, size, 3, "w+")
        for k in range(0, count, 64):
            m = min(64, count - k)
            files.images[k : k + m] = (
                base[rng.integers(0, len(base), m)]
                + noise[rng.integers(0, len(noise), m)]
                + rng.integers(0, 96, (m, 1, 1, 3), dtype=np.uint8)
            )
        files.labels[:] = rng.integers(0, classes, count)
        files.status[:] = 1
        files.flush()
        (root / f"{split}_files.json").write_text(
            json.dumps([[f"generated/{i}", int(y)] for i, y in enumerate(files.labels.tolist())])
        )
        meta["splits"][split] = {"count": count, "skipped": []}
    # the statistics of the first 1,000 images (all of them would take minutes for 20,000)
    sample = {**meta, "splits": {"train": {"count": min(n, 1000)}}}
    meta["stats"] = dataset_statistics(root, sample, lambda **kw: tqdm(disable=True, **kw))
    meta["complete"] = True
    write_meta(root, meta)
    return root


def synthetic_jpegs(dst: str | os.PathLike[str], n: int, *, classes: int = 10, seed: int = 0) -> Path:
    """``n`` photo-sized (500x375) generated JPEGs in ``dst/train/CLASS/``, quality 90, for the
    torchvision reference pipeline (its cost is decoding and resizing, which depend on the size)."""
    rng = np.random.default_rng(seed)
    root = Path(dst)
    templates = torch.nn.functional.interpolate(
        torch.rand(16, 3, 6, 8), size=(375, 500), mode="bilinear", align_corners=False
    )
    templates = (templates * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i in range(n):
        d = root / "train" / f"class{i % classes:03d}"
        d.mkdir(parents=True, exist_ok=True)
        img = templates[rng.integers(0, 16)] // 2 + rng.integers(0, 64, (375, 500, 3), dtype=np.uint8)
        Image.fromarray(img).save(d / f"{i:06d}.jpg", quality=90)
    return root


def packed_bytes(dst: Path) -> dict[str, bytes]:
    """Every file of a packed dataset, dataset.json without its timing (the one field that differs)."""
    out = {}
    for f in sorted(dst.iterdir()):
        if f.name == "dataset.json":
            meta = json.loads(f.read_text())
            meta.pop("seconds", None)
            out[f.name] = json.dumps(meta, sort_keys=True).encode()
        elif f.is_file() and f.name != ".lock":
            out[f.name] = f.read_bytes()
    return out
