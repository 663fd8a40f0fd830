"""``alexnet prepare SRC DST``: an image-folder tree into a packed dataset (the format: ``format.py``).

Every image is read robustly (``data/images.py``), its shorter side resized to ``size`` and the
central square kept (the paper's §2), and written into the split's memory-mapped file by the
main process while worker processes decode. Unusable files are skipped and listed. The run can
be interrupted at any point and rerun to finish. At the end it stores the training set's
per-pixel mean image, per-channel mean and standard deviation, and the eigen-decomposition of
the RGB covariance that the paper's PCA colour augmentation needs.
"""

from __future__ import annotations

import errno
import fcntl
import json
import multiprocessing as mp
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torchvision.datasets import ImageNet
from tqdm import tqdm

from ...errors import UserError, printable, user_path
from ..datasets import list_folder, resolve_folder
from ..imagenet import display_names
from ..images import ImageError, image_to_array, load_image, resize_center_square
from .format import FORMAT, PENDING, SKIPPED, VERSION, WRITTEN, SplitFiles, read_meta

CHUNK = 32  # images per task handed to a worker
FLUSH_EVERY = 2048  # images between flushes of the status file (what a rerun can trust)


@dataclass
class PrepareSummary:
    dst: Path
    written: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    bytes_on_disk: int = 0
    seconds: float = 0.0
    already_complete: bool = False

    def lines(self) -> list[str]:
        out = [f"packed dataset {printable(self.dst)}" + (" (already complete)" if self.already_complete else "")]
        for split, n in self.written.items():
            out.append(f"  {split}: {n:,} images, {len(self.skipped.get(split, [])):,} skipped")
        for split, items in self.skipped.items():
            for path, why in items[:20]:
                out.append(f"  skipped [{split}] {printable(path)}: {printable(why)}")
            if len(items) > 20:
                out.append(f"  ... and {len(items) - 20} more (all listed in {self.dst}/dataset.json)")
        out.append(f"  {self.bytes_on_disk / 1e9:.2f} GB on disk, {self.seconds:.1f} s")
        return out


def _decode(task: tuple[list[int], list[str], int]) -> list[tuple[int, np.ndarray | None, str]]:
    """Worker: decode a chunk of files to S x S x 3 uint8 arrays (or None and the reason)."""
    indices, paths, size = task
    out = []
    for i, path in zip(indices, paths):
        try:
            img = resize_center_square(load_image(path, 3, min_side=size), size)
            out.append((i, image_to_array(img).transpose(1, 2, 0), ""))
        except ImageError as e:
            out.append((i, None, str(e)))
    return out


ILSVRC_DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"


def _ilsvrc_names(src: Path) -> dict[str, str] | None:
    """For a folder holding the official ILSVRC2012 archives (``ILSVRC2012_devkit_t12.tar.gz``,
    ``ILSVRC2012_img_train.tar``, ``ILSVRC2012_img_val.tar``): let torchvision's ``ImageNet``
    unpack them, once, into ``src/train`` and ``src/val`` (one folder per WNID; it also checks
    the archives' MD5 sums), and return each WNID's first human-readable name."""
    if not ((src / ILSVRC_DEVKIT).is_file() or (src / "meta.bin").is_file()):
        return None
    names: dict[str, str] = {}
    try:
        for split in ("train", "val"):
            print(f"reading the ILSVRC2012 {split} archive in {src} (unpacked on first use) ...", file=sys.stderr)
            ds = ImageNet(str(src), split=split)
            names.update({w: c[0] for w, c in zip(ds.wnids, ds.classes)})
    except (RuntimeError, ImportError, OSError) as e:
        raise UserError(f"{src}: cannot read the ILSVRC2012 archives ({str(e).splitlines()[0]})") from None
    return names


def source_splits(src: Path) -> tuple[dict[str, list[tuple[str, int]]], list[str]]:
    """The image folder's splits to prepare (train, and val or test where it has one) and its classes."""
    train, classes = list_folder(src, "train")
    splits: dict[str, list[tuple[str, int]]] = {"train": train}
    try:
        splits["val"], _ = list_folder(src, "val", classes)
    except UserError as e:
        if "folder to evaluate on" not in str(e):
            raise
    return splits, classes


def _initialise(src: Path, dst: Path, size: int, names: dict[str, str] | None = None) -> dict[str, Any]:
    """Create the files of a new packed dataset (full-size sparse maps) and its unfinished dataset.json."""
    splits, classes = source_splits(src)
    dst.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "complete": False,
        "source": str(src),
        "image_size": size,
        "channels": 3,
        "layout": "NHWC",
        "dtype": "uint8",
        "classes": classes,
        "class_names": [names.get(c, c) for c in classes] if names else display_names(classes),
        "splits": {},
    }
    need = sum(len(v) for v in splits.values()) * size * size * 3
    free = shutil.disk_usage(dst).free
    if need > free:
        raise UserError(
            f"DST {dst}: needs {need / 2**30:,.2f} GB for {sum(len(v) for v in splits.values()):,} images "
            f"at {size}x{size}, and the disk has {free / 2**30:,.2f} GB free"
        )
    for split, samples in splits.items():
        (dst / f"{split}_files.json").write_text(json.dumps([[os.path.relpath(p, src), y] for p, y in samples]))
        _reserve(dst / f"{split}_images.u8", len(samples) * size * size * 3)
        _reserve(dst / f"{split}_labels.i32", len(samples) * 4)
        _reserve(dst / f"{split}_status.u8", len(samples))
        files = SplitFiles.open(dst, split, len(samples), size, 3, "r+")  # "w+" would recreate them sparse
        files.labels[:] = [y for _, y in samples]
        files.flush()
        meta["splits"][split] = {"count": len(samples), "skipped": []}
    write_meta(dst, meta)
    return meta


def _reserve(path: Path, nbytes: int) -> None:
    """Allocate the file's blocks now (posix_fallocate): a memory map over a sparse file would run
    out of disk on a page fault, which kills the process with SIGBUS instead of an error."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if nbytes and hasattr(os, "posix_fallocate"):
            try:
                os.posix_fallocate(fd, 0, nbytes)
            except OSError as e:
                if e.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # a filesystem without it: sparse, as before
                    os.ftruncate(fd, nbytes)
                else:
                    raise
        else:
            os.ftruncate(fd, nbytes)
    finally:
        os.close(fd)


def write_meta(dst: Path, meta: dict[str, Any]) -> None:
    tmp = dst / ".dataset.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, dst / "dataset.json")


def _fill(dst: Path, meta: dict[str, Any], split: str, workers: int, bar_factory: Callable[..., Any]) -> None:
    """Decode and write every pending image of a split."""
    src = Path(meta["source"])
    info = meta["splits"][split]
    if info.get("compacted") or "compaction" in info:  # decoding finished before an interruption
        return
    size = meta["image_size"]
    files = SplitFiles.open(dst, split, info["count"], size, 3, "r+")
    names = json.loads((dst / f"{split}_files.json").read_text())
    # Why each file was skipped, by its index; the status file and this map reach the disk at different
    # moments, so after a crash they can disagree: a skip without its reason is decoded again, a reason
    # whose skip did not reach the disk is dropped (the file is pending again). The list in dataset.json
    # is derived from the two at the end, in file order: the same whatever the interruptions.
    reasons = {int(k): v for k, v in info.get("skip_reasons", {}).items()}
    status = np.asarray(files.status)
    for i in np.flatnonzero(status == SKIPPED).tolist():
        if i not in reasons:
            files.status[i] = PENDING
    reasons = {i: why for i, why in reasons.items() if status[i] == SKIPPED}
    info["skip_reasons"] = {str(i): why for i, why in sorted(reasons.items())}
    pending = np.flatnonzero(np.asarray(files.status) == PENDING).tolist()
    if not pending:
        return
    tasks = [
        (chunk, [str(src / names[i][0]) for i in chunk], size)
        for chunk in (pending[k : k + CHUNK] for k in range(0, len(pending), CHUNK))
    ]
    since_flush = 0
    with bar_factory(total=len(pending), desc=f"prepare {split}", unit="img") as bar:
        results: Iterator[list[tuple[int, np.ndarray | None, str]]]
        pool = mp.get_context("fork").Pool(workers) if workers > 0 else None
        try:
            results = pool.imap(_decode, tasks) if pool else map(_decode, tasks)
            for chunk in results:
                for i, arr, why in chunk:
                    if arr is None:
                        files.status[i] = SKIPPED
                        info["skip_reasons"][str(i)] = why
                    else:
                        files.images[i] = arr
                        files.status[i] = WRITTEN
                since_flush += len(chunk)
                bar.update(len(chunk))
                if since_flush >= FLUSH_EVERY:
                    files.flush()
                    write_meta(dst, meta)
                    since_flush = 0
        finally:
            files.flush()
            write_meta(dst, meta)
            if pool:
                pool.terminate()


def _compact(dst: Path, meta: dict[str, Any], split: str) -> None:
    """Fill the slots of skipped files with the split's last images and truncate the files.

    Idempotent, so that a kill at any moment converges: the plan (which slot gets which image, the new
    file list, the new count) is written before the first move, and a rerun that finds it carries it out
    again from the start. The moves read only slots at or past the new count, which no move writes, and
    the truncation comes last, so redoing a move reads what it read the first time."""
    info = meta["splits"][split]
    if info.get("compacted"):
        return
    size = meta["image_size"]
    image_bytes = size * size * 3
    reasons = {int(k): v for k, v in info.pop("skip_reasons", {}).items()}
    plan = info.get("compaction")
    if plan is None:
        n = info["count"]
        files = SplitFiles.open(dst, split, n, size, 3, "r")
        status = np.asarray(files.status)
        good = int((status == WRITTEN).sum())
        names = json.loads((dst / f"{split}_files.json").read_text())
        info["skipped"] = [
            [names[i][0], reasons.get(i, "unreadable")] for i in np.flatnonzero(status == SKIPPED).tolist()
        ]
        holes = np.flatnonzero(status[:good] != WRITTEN).tolist()
        movers = (np.flatnonzero(status[good:] == WRITTEN) + good).tolist()
        del files
        for h, m in zip(holes, movers):
            names[h] = names[m]
        compacted = dst / f".{split}_files.compacted.json"
        compacted.write_text(json.dumps(names[:good]))
        plan = info["compaction"] = {"good": good, "pairs": list(zip(holes, movers))}
        write_meta(dst, meta)  # the plan is on disk before anything moves
    good, pairs = plan["good"], plan["pairs"]
    if (dst / f"{split}_images.u8").stat().st_size > good * image_bytes:  # the moves are still to (re)do
        files = SplitFiles.open(dst, split, info["count"], size, 3, "r+")
        for h, m in pairs:
            files.images[h] = files.images[m]
            files.labels[h] = files.labels[m]
            files.status[h] = WRITTEN
        files.flush()
        del files
    for name, per in (("images.u8", image_bytes), ("labels.i32", 4), ("status.u8", 1)):
        if (dst / f"{split}_{name}").stat().st_size > good * per:
            os.truncate(dst / f"{split}_{name}", good * per)
    compacted = dst / f".{split}_files.compacted.json"
    if compacted.exists():
        os.replace(compacted, dst / f"{split}_files.json")
    info["count"] = good
    info["compacted"] = True  # a rerun neither decodes nor compacts this split again
    del info["compaction"]
    write_meta(dst, meta)


def dataset_statistics(dst: Path, meta: dict[str, Any], bar_factory: Callable[..., Any]) -> dict[str, Any]:
    """Per-pixel mean image, per-channel mean/std (0-255) and the PCA of RGB values (0-1 scale)."""
    n, size = meta["splits"]["train"]["count"], meta["image_size"]
    images = SplitFiles.open(dst, "train", n, size, 3, "r").images
    pixel_sum = np.zeros((size, size, 3), np.float64)
    moment = np.zeros((3, 3), np.float64)  # sum of x x^T over pixels, x in 0-1
    step = 256
    with bar_factory(total=n, desc="statistics", unit="img") as bar:
        for k in range(0, n, step):
            block = np.asarray(images[k : k + step], dtype=np.float64)
            pixel_sum += block.sum(0)
            flat = block.reshape(-1, 3) / 255.0
            moment += flat.T @ flat
            bar.update(len(block))
    count = n * size * size
    mean_image = (pixel_sum / max(n, 1)).astype("<f4")
    mean_image.tofile(dst / "mean_image.f32")
    mean01 = pixel_sum.sum((0, 1)) / max(count, 1) / 255.0
    cov = moment / max(count, 1) - np.outer(mean01, mean01)
    eigval, eigvec = np.linalg.eigh(cov)  # ascending
    order = np.argsort(eigval)[::-1]
    return {
        "channel_mean": (mean01 * 255).tolist(),
        "channel_std": (np.sqrt(np.clip(np.diag(cov), 0, None)) * 255).tolist(),
        "rgb_covariance_01": cov.tolist(),
        "eigval": eigval[order].tolist(),  # of the RGB covariance, pixel values scaled to 0-1
        "eigvec": eigvec[:, order].tolist(),  # columns are the eigenvectors p1, p2, p3
        "mean_image": "mean_image.f32",
    }


def prepare(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    size: int = 256,
    workers: int = 2,
    progress: bool = True,
) -> PrepareSummary:
    """Pack the image folder ``src`` (train/ and val/ or test/, or the ILSVRC2012 archives) into
    ``dst``; resumable.

    Usage: ``prepare("~/data/imagenet", "~/data/imagenet-256")``.
    """

    def bar(**kw: Any) -> Any:
        return tqdm(disable=not progress or None, dynamic_ncols=True, **kw)

    t0 = time.perf_counter()
    dst = user_path(dst, "DST")
    if size < 8:
        raise UserError(f"--size must be at least 8, not {size}")
    if dst.exists() and not dst.is_dir():
        raise UserError(f"DST {dst}: exists and is not a folder")
    src_path = user_path(src, "SRC")
    if src_path.exists() and (dst.resolve() == src_path.resolve() or src_path.resolve() in dst.resolve().parents):
        raise UserError(f"DST {dst}: inside SRC {src}; the packed copy would become part of its own source")
    lock = _lock(dst)
    try:
        if (dst / "dataset.json").is_file():
            meta = read_meta(dst)
            _same_source(meta, src_path, dst)
            if meta["image_size"] != size:
                raise UserError(
                    f"{dst}: holds images of size {meta['image_size']}, not --size {size}; choose another DST"
                )
            if meta.get("complete"):
                return _summary(dst, meta, time.perf_counter() - t0, already=True)
            print(f"resuming the unfinished packed dataset in {dst}", file=sys.stderr)
        else:
            if dst.exists() and any(p.name != LOCK for p in dst.iterdir()):
                raise UserError(f"{dst}: exists and is not a packed dataset; choose an empty or new folder")
            names = _ilsvrc_names(src_path)
            meta = _initialise(resolve_folder(src), dst, size, names)
        for split in meta["splits"]:
            _fill(dst, meta, split, workers, bar)
        for split in meta["splits"]:
            _compact(dst, meta, split)
        counts = np.bincount(
            SplitFiles.open(dst, "train", meta["splits"]["train"]["count"], size, 3, "r").labels,
            minlength=len(meta["classes"]),
        )
        empty = [c for c, n in zip(meta["classes"], counts.tolist()) if n == 0]
        if empty:
            raise UserError(
                f"{meta['source']}: no usable training image in class folder(s) {', '.join(empty[:10])} "
                f"(every file was skipped; see {dst}/dataset.json)"
            )
        meta["stats"] = dataset_statistics(dst, meta, bar)
        meta["complete"] = True
        meta["seconds"] = meta.get("seconds", 0.0) + time.perf_counter() - t0
        write_meta(dst, meta)
    except OSError as e:
        raise _os_error(dst, e) from None
    finally:
        os.close(lock)  # releases the flock
    return _summary(dst, meta, time.perf_counter() - t0)


LOCK = ".lock"  # DST/.lock: held (flock) by the one prepare that writes DST


def _lock(dst: Path) -> int:
    """Take DST for this process, for its whole life: a second ``prepare`` into it is refused in one
    line (two writers of one memory map end in SIGBUS or a torn dataset). The kernel's lock goes with
    the process however it ends, so a lock left by a killed prepare is taken over."""
    try:
        dst.mkdir(parents=True, exist_ok=True)
        fd = os.open(dst / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise _os_error(dst, e) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise UserError(f"DST {dst}: in use by {printable(holder)}, which is writing it; wait for it to end") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"alexnet prepare, process {os.getpid()}".encode(), 0)
    return fd


def _os_error(dst: Path, e: OSError) -> UserError:
    """One line for what the disk refused: full, read-only, or not allowed."""
    try:
        free = f"; {shutil.disk_usage(dst if dst.exists() else dst.parent).free / 2**20:,.0f} MB free"
    except OSError:
        free = ""
    if e.errno == errno.ENOSPC:
        return UserError(f"DST {dst}: the disk is full{free}; free some space and rerun the same command to finish")
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return UserError(f"DST {dst}: cannot write there ({e.strerror})")
    return UserError(f"DST {dst}: {e.strerror or e}{free}")


def _same_source(meta: dict[str, Any], src: Path, dst: Path) -> None:
    """A packed dataset is finished or resumed from the source it was made from, never another."""
    made_from = meta.get("source", "")
    if made_from == "generated":
        return
    try:
        mine = str(resolve_folder(src))
    except UserError:
        mine = str(src.resolve())
    if os.path.realpath(made_from) != os.path.realpath(mine) and os.path.realpath(made_from) != str(src.resolve()):
        state = "a complete" if meta.get("complete") else "a partial"
        raise UserError(
            f"DST {dst}: holds {state} dataset made from {made_from}, not from SRC {src}; "
            "choose another DST (or the same SRC)"
        )


def _summary(dst: Path, meta: dict[str, Any], seconds: float, already: bool = False) -> PrepareSummary:
    total = sum(f.stat().st_size for f in dst.iterdir() if f.is_file())
    return PrepareSummary(
        dst=dst,
        written={s: i["count"] for s, i in meta["splits"].items()},
        skipped={s: [tuple(x) for x in i["skipped"]] for s, i in meta["splits"].items()},  # type: ignore[misc]
        bytes_on_disk=total,
        seconds=seconds,
        already_complete=already,
    )
