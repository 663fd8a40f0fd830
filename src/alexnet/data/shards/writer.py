"""``alexnet prepare SRC DST --format jpeg``: an image folder into JPEG shards (the format: ``format.py``),
and ``alexnet prepare --verify DST``.

Every source file is read robustly (``data/images.py``), resized (``square``: the paper's central
256x256; ``shorter``: shorter side 256, aspect kept), encoded once by Pillow at ``--quality`` and
written, in a seeded random order, into shards of ``--shard-size`` images. Worker processes read, resize
and encode; the main process writes each shard to a temporary name, then its index, then renames it and
records it (count, bytes, sha256) in dataset.json. A prepare killed at any moment and rerun redoes only
the shards not recorded and ends with the same dataset.json and the same bytes in every file as an
uninterrupted one: the order, the encoding and the tar headers (no times, no owners) depend on the
source alone. The training statistics are measured last, on the training images as decoded.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing as mp
import os
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ...errors import UserError, printable, user_path
from ..datasets import resolve_folder
from ..imagenet import display_names
from ..images import ImageError, load_image, resize_center_square
from ..packed.writer import (
    LOCK,
    PrepareSummary,
    _ilsvrc_names,
    _lock,
    _os_error,
    _same_source,
    source_splits,
    write_meta,
)
from . import codec
from .format import (
    FORMAT,
    INDEX_COLUMNS,
    MAX_ASPECT,
    SHAPES,
    SHARD_SIZE,
    VERSION,
    index_name,
    member_key,
    read_index,
    read_shards_meta,
    shard_name,
)
from .reader import check_shard_dataset, shard_sums

CHUNK = 16  # images per task handed to a worker
ORDER_SEED = 0  # the seeded order of the images across shards; stored in dataset.json
SETTINGS = ("image_size", "shape", "quality", "shard_size", "max_aspect")


def _encode(task: tuple[list[int], list[str], int, str, int]) -> list[tuple[int, bytes | None, int, int, str]]:
    """Worker: read, resize and encode a chunk of files: (position, JPEG bytes or None, height, width, why)."""
    positions, paths, size, shape, quality = task
    out: list[tuple[int, bytes | None, int, int, str]] = []
    for pos, path in zip(positions, paths):
        try:
            img = load_image(path, 3, min_side=size)
            img = resize_center_square(img, size) if shape == "square" else codec.resize_shorter(img, size, MAX_ASPECT)
            out.append((pos, codec.encode(img, quality), img.height, img.width, ""))
        except ImageError as e:
            out.append((pos, None, 0, 0, str(e)))
    return out


def _member(name: str, size: int) -> tarfile.TarInfo:
    """A tar header that depends on the name and size alone (reruns write the same bytes)."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_shard(
    dst: Path, split: str, k: int, results: list[tuple[int, bytes | None, int, int, str]], labels: dict[int, int]
) -> dict[str, Any]:
    """Write shard k of ``split`` from its encoded images (in key order); returns its manifest entry.

    The tar and its index go to temporary names, are flushed to the disk, then renamed (index first):
    a shard file that exists under its name is whole, and a shard is done once dataset.json lists it."""
    name = shard_name(split, k)
    rows: list[list[int]] = []
    skipped: list[int] = []
    tmp = dst / f".{name}.tmp"
    with open(tmp, "wb") as f:
        with tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for pos, data, h, w, _ in results:
                if data is None:
                    skipped.append(pos)
                    continue
                key = member_key(pos)
                info = _member(f"{key}.jpg", len(data))
                offset = tar.offset + len(info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape"))
                tar.addfile(info, io.BytesIO(data))
                label = labels[pos]
                cls = str(label).encode()
                tar.addfile(_member(f"{key}.cls", len(cls)), io.BytesIO(cls))
                rows.append([pos, offset, len(data), label, h, w])
        f.flush()
        os.fsync(f.fileno())
    idx_tmp = dst / f".{index_name(name)}.tmp"
    np.asarray(rows, dtype="<i8").reshape(-1, len(INDEX_COLUMNS)).tofile(idx_tmp)
    os.replace(idx_tmp, dst / index_name(name))
    digest = hashlib.sha256()
    with open(tmp, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    os.replace(tmp, dst / name)
    return {
        "name": name,
        "count": len(rows),
        "bytes": (dst / name).stat().st_size,
        "sha256": digest.hexdigest(),
        "skipped": skipped,
    }


def _initialise(src: Path, dst: Path, settings: dict[str, Any], names: dict[str, str] | None) -> dict[str, Any]:
    splits, classes = source_splits(src)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "complete": False,
        "source": str(src),
        **settings,
        "channels": 3,
        "order_seed": ORDER_SEED,
        "classes": classes,
        "class_names": [names.get(c, c) for c in classes] if names else display_names(classes),
        "splits": {},
    }
    for split, samples in splits.items():
        rng = np.random.default_rng([ORDER_SEED, 0 if split == "train" else 1])
        order = rng.permutation(len(samples))  # no shard holds one class
        listed = [[os.path.relpath(samples[i][0], src), samples[i][1]] for i in order.tolist()]
        (dst / f"{split}_files.json").write_text(json.dumps(listed))
        meta["splits"][split] = {"files": len(samples), "shards": [], "skipped": []}
    write_meta(dst, meta)
    return meta


def _shard_done(dst: Path, entry: dict[str, Any]) -> bool:
    """A recorded shard still whole on the disk (its size; the hash is ``--verify``'s)."""
    try:
        return (dst / entry["name"]).stat().st_size == entry["bytes"] and (dst / index_name(entry["name"])).is_file()
    except OSError:
        return False


def _fill(dst: Path, meta: dict[str, Any], split: str, workers: int, bar_factory: Callable[..., Any]) -> None:
    """Write every shard of ``split`` that dataset.json does not list yet."""
    info = meta["splits"][split]
    listed = json.loads((dst / f"{split}_files.json").read_text())
    n, per = len(listed), meta["shard_size"]
    n_shards = -(-n // per)
    done = [s for s in info["shards"] if _shard_done(dst, s)]
    if len(done) != len(info["shards"]):  # a recorded shard that is gone or cut: it and the rest are redone
        done = done[: next(i for i, s in enumerate(info["shards"]) if not _shard_done(dst, s))]
    info["shards"] = done
    todo = range(len(done), n_shards)
    if not todo:
        return
    src = Path(meta["source"])
    labels = {pos: int(y) for pos, (_, y) in enumerate(listed)}
    remaining = n - len(done) * per
    pool = mp.get_context("fork").Pool(workers) if workers > 0 else None
    try:
        with bar_factory(total=remaining, desc=f"prepare {split}", unit="img") as bar:
            for k in todo:
                positions = list(range(k * per, min(n, (k + 1) * per)))
                tasks = [
                    (
                        chunk,
                        [str(src / listed[p][0]) for p in chunk],
                        meta["image_size"],
                        meta["shape"],
                        meta["quality"],
                    )
                    for chunk in (positions[i : i + CHUNK] for i in range(0, len(positions), CHUNK))
                ]
                results: list[tuple[int, bytes | None, int, int, str]] = []
                it: Iterator[list[Any]] = pool.imap(_encode, tasks) if pool else map(_encode, tasks)
                for chunk in it:
                    results += chunk
                    bar.update(len(chunk))
                entry = _write_shard(dst, split, k, results, labels)
                why = {pos: reason for pos, data, _, _, reason in results if data is None}
                entry["skipped"] = [[listed[p][0], why[p]] for p in entry["skipped"]]
                info["shards"].append(entry)
                write_meta(dst, meta)  # the shard is done
    finally:
        if pool:
            pool.terminate()


def _statistics(dst: Path, meta: dict[str, Any], workers: int, bar_factory: Callable[..., Any]) -> dict[str, Any]:
    """The training statistics of the raw format, measured on the training images as training decodes
    them: the per-pixel mean of their central squares, per-channel mean and std, the RGB eigen-decomposition."""
    size = meta["image_size"]
    shards = meta["splits"]["train"]["shards"]
    pixel_sum = np.zeros((size, size, 3), np.float64)
    moment = np.zeros((3, 3), np.float64)
    channel_sum = np.zeros(3, np.float64)
    count = 0
    tasks = [(str(dst), s["name"], s["count"], size) for s in shards]
    pool = mp.get_context("fork").Pool(workers) if workers > 0 else None
    try:
        with bar_factory(total=sum(s["count"] for s in shards), desc="statistics", unit="img") as bar:
            for n, ps, mo, cs in pool.imap(shard_sums, tasks) if pool else map(shard_sums, tasks):  # in shard order
                pixel_sum += ps
                moment += mo
                channel_sum += cs
                count += n
                bar.update(n)
    finally:
        if pool:
            pool.terminate()
    pixels = count * size * size
    (pixel_sum / max(count, 1)).astype("<f4").tofile(dst / "mean_image.f32")
    mean01 = channel_sum / max(pixels, 1) / 255.0
    cov = moment / max(pixels, 1) - np.outer(mean01, mean01)
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1]
    return {
        "channel_mean": (mean01 * 255).tolist(),
        "channel_std": (np.sqrt(np.clip(np.diag(cov), 0, None)) * 255).tolist(),
        "rgb_covariance_01": cov.tolist(),
        "eigval": eigval[order].tolist(),
        "eigvec": eigvec[:, order].tolist(),
        "mean_image": "mean_image.f32",
    }


def prepare_shards(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    size: int = 256,
    shape: str = "square",
    quality: int = 95,
    shard_size: int = SHARD_SIZE,
    workers: int = 2,
    progress: bool = True,
) -> PrepareSummary:
    """Write the image folder ``src`` as JPEG shards into ``dst``; resumable.

    Usage: ``prepare_shards("~/data/imagenet", "~/data/imagenet-jpeg", shape="shorter")``."""

    def bar(**kw: Any) -> Any:
        return tqdm(disable=not progress or None, dynamic_ncols=True, **kw)

    t0 = time.perf_counter()
    if size < 8 or size > 4096:
        raise UserError(f"--size must be in 8..4096, not {size}")
    if shape not in SHAPES:
        raise UserError(f"--shape must be one of {', '.join(SHAPES)}, not {shape!r}")
    if not 1 <= quality <= 100:
        raise UserError(f"--quality must be in 1..100, not {quality}")
    if not 1 <= shard_size <= 1_000_000:
        raise UserError(f"--shard-size must be in 1..1,000,000 images, not {shard_size}")
    dst = user_path(dst, "DST")
    if dst.exists() and not dst.is_dir():
        raise UserError(f"DST {dst}: exists and is not a folder")
    src_path = user_path(src, "SRC")
    if src_path.exists() and (dst.resolve() == src_path.resolve() or src_path.resolve() in dst.resolve().parents):
        raise UserError(f"DST {dst}: inside SRC {src}; the shards would become part of their own source")
    settings = {
        "image_size": size,
        "shape": shape,
        "quality": quality,
        "shard_size": shard_size,
        "max_aspect": MAX_ASPECT,
    }
    lock = _lock(dst)
    try:
        if (dst / "dataset.json").is_file():
            meta = read_shards_meta(dst)
            _same_source(meta, src_path, dst)
            differ = [
                f"--{k.replace('_', '-')} {meta.get(k)} (not {v})" for k, v in settings.items() if meta.get(k) != v
            ]
            if differ:
                raise UserError(f"DST {dst}: was made with {', '.join(differ)}; rerun with those or choose another DST")
            if meta.get("complete"):
                return _summary(dst, meta, time.perf_counter() - t0, already=True)
            print(f"resuming the unfinished shards in {printable(dst)}", file=sys.stderr)
        else:
            if dst.exists() and any(p.name != LOCK for p in dst.iterdir()):
                raise UserError(f"{dst}: exists and is not a shard dataset; choose an empty or new folder")
            meta = _initialise(resolve_folder(src), dst, settings, _ilsvrc_names(src_path))
        for split in meta["splits"]:
            _fill(dst, meta, split, workers, bar)
        for info in meta["splits"].values():
            info["count"] = sum(s["count"] for s in info["shards"])
            info["skipped"] = [x for s in info["shards"] for x in s["skipped"]]
        labels = np.concatenate(
            [read_index(dst, s["name"], s["count"])[:, 3] for s in meta["splits"]["train"]["shards"]] or [np.zeros(0)]
        )
        counts = np.bincount(labels.astype(np.int64), minlength=len(meta["classes"]))
        empty = [c for c, n in zip(meta["classes"], counts.tolist()) if n == 0]
        if empty:
            raise UserError(
                f"{meta['source']}: no usable training image in class folder(s) {', '.join(empty[:10])} "
                f"(every file was skipped; see {dst}/dataset.json)"
            )
        meta["stats"] = _statistics(dst, meta, workers, bar)
        meta["complete"] = True
        meta["seconds"] = meta.get("seconds", 0.0) + time.perf_counter() - t0
        write_meta(dst, meta)
    except OSError as e:
        raise _os_error(dst, e) from None
    finally:
        os.close(lock)
    return _summary(dst, meta, time.perf_counter() - t0)


def _summary(dst: Path, meta: dict[str, Any], seconds: float, already: bool = False) -> PrepareSummary:
    return PrepareSummary(
        dst=dst,
        written={s: i["count"] for s, i in meta["splits"].items()},
        skipped={s: [tuple(x) for x in i["skipped"]] for s, i in meta["splits"].items()},  # type: ignore[misc]
        bytes_on_disk=sum(f.stat().st_size for f in dst.iterdir() if f.is_file()),
        seconds=seconds,
        already_complete=already,
    )


def verify(dst: str | os.PathLike[str], progress: bool = True) -> list[str]:
    """Every shard of a finished shard dataset against dataset.json and its index: present, its size and
    sha256, every member where the index says, a whole JPEG of the indexed size, its label. Returns one
    line per problem (empty: all good)."""
    root = user_path(dst, "DST")
    meta = check_shard_dataset(root)  # the manifest itself (one error line if it is unreadable)
    problems: list[str] = []
    total = sum(s["count"] for i in meta["splits"].values() for s in i["shards"])
    with tqdm(total=total, desc="verify", unit="img", disable=not progress or None, dynamic_ncols=True) as bar:
        for info in meta["splits"].values():
            for entry in info["shards"]:
                problems += _verify_shard(root, meta, entry)
                bar.update(entry["count"])
    return problems


def _verify_shard(root: Path, meta: dict[str, Any], entry: dict[str, Any]) -> list[str]:
    name = entry["name"]
    path = root / name
    try:
        data = path.read_bytes()
    except OSError as e:
        return [f"{path}: missing or unreadable ({e.strerror})"]
    out = []
    if len(data) != entry["bytes"]:
        out.append(f"{path}: {len(data):,} bytes, dataset.json says {entry['bytes']:,} (truncated or replaced)")
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        out.append(f"{path}: sha256 differs from dataset.json's (the file changed since prepare)")
    try:
        rows = read_index(root, name, entry["count"])
    except UserError as e:
        return out + [str(e)]
    members: dict[str, tuple[int, int]] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for m in tar:
                members[m.name] = (m.offset_data, m.size)
    except (tarfile.TarError, EOFError) as e:
        out.append(f"{path}: not a readable tar ({e}); its members are checked from the index alone")
    n_classes = len(meta["classes"])
    for key, offset, size, label, h, w in rows.tolist():
        where = f"{name}:{member_key(key)}"
        if offset + size > len(data):
            out.append(f"{where}: past the end of the shard (offset {offset:,} + {size:,} > {len(data):,})")
            continue
        if members and members.get(f"{member_key(key)}.jpg") != (offset, size):
            out.append(f"{where}: the tar's member is not where the index says (offset {offset:,}, {size:,} bytes)")
            continue
        if not 0 <= label < n_classes:
            out.append(f"{where}: label {label} is not a class (0..{n_classes - 1})")
        cls = members.get(f"{member_key(key)}.cls")
        if members and (cls is None or data[cls[0] : cls[0] + cls[1]] != str(label).encode()):
            out.append(f"{where}: its .cls member does not hold the index's label {label}")
        try:
            codec.decode(data[offset : offset + size], (h, w))
        except ImageError as e:
            out.append(f"{where}: {e}")
    return out
