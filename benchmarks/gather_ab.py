"""The packed training input, before and after the gather rework, side by side in one run.

    python benchmarks/gather_ab.py [--data-root ../shared/data] [--images 2000]

Three arms over one packed dataset (``alexnet prepare``, 256x256), each a random 224 crop and flip per
batch of 128 after the gather, alternated ``--repeats`` times, medians reported:
  - ``index``: the batch gathered by torch indexing in the consumer's thread (what ``alexnet bench
    loader`` timed before);
  - ``before``: the Prefetcher as training used it before (numpy.take with its default mode="raise",
    which gathers into a temporary and copies it, and min(workers, 4) = 2 gather threads);
  - ``after``: the Prefetcher as it is (take mode="clip" straight into the slot, ``gather_threads()``,
    read-ahead hints on the memory map).
Two datasets: photo-sized stand-ins (CIFAR-10 upscaled to 500x375, JPEG q90; upscaled images decode
and compress more easily than real photographs) and the CIFAR-10 training images at 256x256.
Measure with nothing else running.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from alexnet.data import pipeline  # noqa: E402
from alexnet.data.datasets import resolve_folder  # noqa: E402
from alexnet.data.loader import BatchLoader  # noqa: E402
from alexnet.data.packed.reader import load_packed  # noqa: E402
from alexnet.data.packed.writer import prepare  # noqa: E402
from alexnet.data.pipeline import Prefetcher, gather_threads  # noqa: E402
from alexnet.data.transforms import random_crop  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loader import photo_folder  # noqa: E402

REAL_TAKE = np.take
REAL_ADVISE = pipeline.advise_rows


def take_as_before(a, indices, axis=None, out=None, mode="raise"):  # type: ignore[no-untyped-def]
    return REAL_TAKE(a, indices, axis=axis, out=out)  # the default mode, as the code before called it


def rate(arm: str, packed: Path, batches: int, batch: int = 128) -> float:
    ds = load_packed(packed, "train")
    loader = BatchLoader(ds, batch, shuffle=True)
    gen = torch.Generator().manual_seed(0)
    if arm == "index":
        source = loader
    else:
        pipeline.np.take = take_as_before if arm == "before" else REAL_TAKE  # type: ignore[attr-defined]
        pipeline.advise_rows = (lambda *a: None) if arm == "before" else REAL_ADVISE  # no read-ahead before
        threads = 2 if arm == "before" else gather_threads()
        source = Prefetcher(loader, torch.device("cpu"), depth=3, threads=threads)
    n, t0, epoch = 0, None, 0
    try:
        while n < batches + 2:
            loader.set_epoch(epoch)
            for x, _ in source:
                random_crop(x, 224, generator=gen, flip=True)
                n += 1
                if n == 2:
                    t0 = time.perf_counter()  # after two warm-up batches
                if n >= batches + 2:
                    break
            epoch += 1
    finally:
        if hasattr(source, "close"):
            source.close()
        pipeline.np.take = REAL_TAKE  # type: ignore[attr-defined]
        pipeline.advise_rows = REAL_ADVISE
    assert t0 is not None
    return batches * batch / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--batches", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="alexnet-gather-") as tmp:
        tmpd = Path(tmp)
        photos = photo_folder(tmpd / "photos", args.data_root, args.images)
        cifar = resolve_folder(Path(args.data_root) / "cifar10" / "cifar10-jpeg.tar.gz")
        for name, folder in (("photo stand-ins (500x375 JPEG)", photos), ("CIFAR-10 train", cifar)):
            packed = tmpd / f"packed-{len(results)}"
            prepare(folder, packed, size=256, workers=2, progress=False)
            runs: dict[str, list[float]] = {"index": [], "before": [], "after": []}
            for _ in range(args.repeats):
                for arm in runs:
                    runs[arm].append(rate(arm, packed, args.batches))
            results[name] = {arm: {"median": statistics.median(v), "runs": v} for arm, v in runs.items()}
            print(name, {a: round(r["median"]) for a, r in results[name].items()}, file=sys.stderr, flush=True)
    print(
        "| packed data | gathered by torch indexing | Prefetcher before | Prefetcher after "
        "| after / before | after / index |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        i, b, a = (r[k]["median"] for k in ("index", "before", "after"))
        print(f"| {name} | {i:,.0f} | {b:,.0f} | {a:,.0f} | {a / b:.2f}x | {a / i:.2f}x |")
    print("\n```json\n" + json.dumps(results, indent=1) + "\n```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
