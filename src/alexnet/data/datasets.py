"""Datasets named by a SPEC string: ``mnist[:ROOT]``, ``cifar10[:ROOT]``, an image-folder path,
or a packed dataset made by ``alexnet prepare`` (``packed/``).

Every dataset yields ``(image, label)`` with ``image`` a (C, H, W) uint8 tensor at a fixed size
(the "stored" image: for folders, shorter side resized to ``image_size`` and centre-cropped, the
paper's §2; MNIST and CIFAR-10 at their native 28 and 32). Crops, flips and normalisation happen
later on whole batches (``transforms.py``), so the same code runs on the CPU and on a GPU.

Small datasets (MNIST, CIFAR-10, small folders) are decoded once and kept in memory as one uint8
tensor; folders too large for ``cache_limit_bytes`` are decoded on the fly by loader workers.
"""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import CIFAR10, MNIST
from tqdm import tqdm

from ..errors import UserError, printable, user_path
from ..files import atomic_torch_save
from ..settings import cache_dir as cache_setting
from ..settings import data_root, max_extract_bytes
from .base import FolderDataset, InMemoryDataset
from .images import walk_images
from .packed.reader import is_packed, load_packed
from .shards.format import is_shards
from .shards.reader import load_shards

VAL_DIR_NAMES = ("val", "test", "validation")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".zip")


def default_root() -> str:
    """Where ``mnist`` / ``cifar10`` without ``:ROOT`` look: $ALEXNET_DATA_ROOT, else ./data."""
    return data_root()


def cache_dir() -> Path:
    """Where archives are extracted: $ALEXNET_CACHE, else ~/.cache/alexnet."""
    return cache_setting()


@dataclass
class DataSpec:
    kind: str  # "mnist", "cifar10" or "folder"
    root: str  # dataset root (mnist/cifar10) or the folder/archive path

    @classmethod
    def parse(cls, spec: str) -> DataSpec:
        """``mnist``, ``mnist:ROOT``, ``cifar10``, ``cifar10:ROOT`` or a folder (or archive) path."""
        name, sep, root = spec.partition(":")
        if name.lower() in ("mnist", "cifar10", "cifar-10"):
            kind = "cifar10" if name.lower().startswith("cifar") else "mnist"
            return cls(kind, root if sep and root else default_root())
        if not spec:
            raise UserError("--data is empty; give mnist[:ROOT], cifar10[:ROOT] or an image-folder path")
        return cls("folder", spec)


# --------------------------------------------------------------------------------------------- folders


def _extract(archive: Path) -> Path:
    """Extract an archive once into the cache (atomically) and return the folder."""
    st = archive.stat()
    key = hashlib.sha1(f"{archive.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    stem = archive.name.split(".")[0]
    dest = cache_dir() / "extracted" / f"{stem}-{key}"
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{stem}-"))
    print(f"extracting {archive} to {dest} ...", file=sys.stderr)
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                _check_expansion(archive, sum(i.file_size for i in z.infolist()), dest.parent)
                z.extractall(tmp)
        else:
            with tarfile.open(archive) as t:
                _check_expansion(archive, sum(m.size for m in t.getmembers() if m.isfile()), dest.parent)
                t.extractall(tmp, filter="data")
        os.replace(tmp, dest)
    except UserError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(
            f"{archive}: cannot extract ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
    return dest


MAX_EXPANSION = 100  # an image archive expands by about 1x; a ratio far above that is a bomb


def _check_expansion(archive: Path, total: int, where: Path) -> None:
    """Refuse, before writing anything, an archive that would not fit or expands like a zip bomb."""
    size = max(archive.stat().st_size, 1)
    limit = max_extract_bytes()
    if total > MAX_EXPANSION * size and total > 64 << 20:
        raise UserError(
            f"{archive}: would expand {size:,} bytes into {total:,} ({total / size:,.0f}x): "
            "a decompression bomb? not extracted"
        )
    if limit and total > limit:
        raise UserError(f"{archive}: would expand into {total:,} bytes, over ALEXNET_MAX_EXTRACT_BYTES={limit:,}")
    free = shutil.disk_usage(where).free
    if total > free:
        raise UserError(f"{archive}: needs {total / 2**20:,.0f} MB to extract, {free / 2**20:,.0f} MB free in {where}")


def _find_split_root(path: Path) -> Path:
    """The folder holding ``train/``: ``path`` itself or its single subfolder (archives often nest)."""
    if (path / "train").is_dir():
        return path
    subs = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subs) == 1 and (subs[0] / "train").is_dir():
        return subs[0]
    return path


def resolve_folder(path: str | os.PathLike[str]) -> Path:
    """An image-folder root: a folder with ``train/`` and ``val/`` (or ``test/``), or an archive of one."""
    p = user_path(path, "--data")
    try:
        found = p.exists()
    except OSError as e:  # a name too long for the file system, a permission on a parent
        raise UserError(f"--data {path}: {e.strerror or e}") from None
    if not found:
        raise UserError(f"--data {path}: no such file or folder")
    if p.is_file():
        if not p.name.lower().endswith(ARCHIVE_SUFFIXES):
            raise UserError(f"--data {path}: a file, but not an archive ({', '.join(ARCHIVE_SUFFIXES)})")
        p = _extract(p)
    p = _find_split_root(p)
    if not (p / "train").is_dir():
        raise UserError(f"--data {path}: expected a train/ folder with one subfolder per class")
    return p


def _split_dir(root: Path, split: str) -> Path:
    if split == "train":
        return root / "train"
    for name in VAL_DIR_NAMES:
        if (root / name).is_dir():
            return root / name
    raise UserError(f"--data {root}: no {'/, '.join(VAL_DIR_NAMES)}/ folder to evaluate on")


def list_folder(root: Path, split: str, classes: list[str] | None = None) -> tuple[list[tuple[str, int]], list[str]]:
    """(path, label) pairs of one split, found recursively in each class folder, sorted.

    ``classes`` (from the training split) fixes the label order; a split whose class folders differ
    is an error, as is a class folder without a single image file.
    """
    d = _split_dir(root, split)
    found = sorted(e.name for e in os.scandir(d) if e.is_dir() and not e.name.startswith("."))
    if not found:
        raise UserError(f"{d}: no class folders (expected {d}/<class>/<image>)")
    if classes is not None and found != classes:
        missing, extra = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
        raise UserError(
            f"{d}: class folders differ from train/'s (missing: {missing[:5] or 'none'}, extra: {extra[:5] or 'none'})"
        )
    # a class folder that is a link to another class's (or an image file linked from two classes) would
    # put the same images under two labels: refused, naming both
    real: dict[str, str] = {}
    for name in found:
        target = os.path.realpath(d / name)
        if target in real:
            raise UserError(
                f"{printable(d / name)}: the same folder as class {printable(real[target])} (a symbolic link); "
                "one image cannot have two labels"
            )
        real[target] = name
    samples: list[tuple[str, int]] = []
    owner: dict[tuple[int, int], str] = {}  # a file's (device, inode) -> the class it was found in first
    for label, name in enumerate(found):
        mine: dict[tuple[int, int], str] = {}
        files = list(
            walk_images(
                d / name,
                lambda path, why: print(f"warning: skipped {printable(path)}: {printable(why)}", file=sys.stderr),
                mine,
            )
        )
        if not files:
            raise UserError(f"{printable(d / name)}: class folder without any image file")
        for key, f in mine.items():  # the same file (a link, or a hard link) in two classes
            first = owner.setdefault(key, name)
            if first != name:
                raise UserError(
                    f"{printable(f)}: the same file as one in class {printable(first)} (a link); "
                    "one image cannot have two labels"
                )
        samples += [(f, label) for f in files]
    return samples, found


def _cache_key(ds: FolderDataset) -> str:
    """Identifies a decoded folder: every file's path, size and mtime, the label, size and channels."""
    how = "" if ds.interpolation == "bilinear" else f":{ds.interpolation}"  # bilinear: the keys made before it
    h = hashlib.sha1(f"v1:{ds.image_size}:{ds.channels}:{ds.classes}{how}".encode())
    for path, label in ds.samples:
        st = os.stat(path)
        h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{label}\n".encode())
    return h.hexdigest()[:16]


def _preload(ds: FolderDataset, workers: int, desc: str) -> InMemoryDataset:
    """Decode every image of a folder once, in parallel, into one uint8 tensor.

    The decoded tensor is kept in the cache folder (keyed by every file's path, size and mtime),
    so the next run over the same folder skips decoding: CIFAR-10's 50,000 JPEGs take about 30 s
    to decode on the 2-core dev machine and under a second to read back.
    """
    cached = cache_dir() / "decoded" / f"{_cache_key(ds)}.pt"
    if cached.is_file():
        try:
            d = torch.load(cached, weights_only=True)
            for path, why in d["skipped"]:
                print(f"warning: skipped {printable(path)}: {printable(why)}", file=sys.stderr)
            ds.skipped.extend(tuple(x) for x in d["skipped"])
            return InMemoryDataset(d["images"], d["labels"], ds.classes)
        except Exception:  # a damaged cache file is rebuilt
            pass

    n = len(ds)
    images = torch.empty(n, ds.channels, ds.image_size, ds.image_size, dtype=torch.uint8)
    labels = torch.empty(n, dtype=torch.long)
    loader = DataLoader(ds, batch_size=256, num_workers=workers, collate_fn=list)
    k = 0
    with tqdm(total=n, desc=desc, unit="img", leave=False, disable=None) as bar:
        for batch in loader:
            for x, y in batch:
                if x is None:
                    ds.skipped.append(y)
                    continue
                images[k], labels[k] = x, y
                k += 1
            bar.update(len(batch))
    for path, why in ds.skipped:
        print(f"warning: skipped {printable(path)}: {printable(why)}", file=sys.stderr)
    result = InMemoryDataset(images[:k].clone(), labels[:k], ds.classes)
    try:
        atomic_torch_save(
            {"images": result.images, "labels": result.labels, "skipped": [list(x) for x in ds.skipped]}, cached
        )
    except OSError as e:  # a read-only cache is not worth failing a run over
        print(f"warning: could not cache decoded images in {cached.parent}: {e}", file=sys.stderr)
    return result


# --------------------------------------------------------------------------------------------- named sets


def _created_by(root: str) -> Path | None:
    """The outermost folder of ``root`` that does not exist yet: what a failed download must remove."""
    p = user_path(root, "--data").absolute()
    top = None
    while not p.exists():
        top, p = p, p.parent
    return top


def _mnist(root: str, train: bool) -> InMemoryDataset:
    try:
        ds = MNIST(root, train=train, download=False)
    except RuntimeError:
        new = _created_by(root)
        try:
            ds = MNIST(root, train=train, download=True)
        except Exception as e:  # offline, or a server error: leave no empty folders behind
            if new is not None:
                shutil.rmtree(new, ignore_errors=True)
            raise UserError(
                f"mnist: no copy under {root}/MNIST/raw and the download failed ({type(e).__name__}); "
                f"use mnist:ROOT with ROOT holding MNIST/raw/*-ubyte"
            ) from None
    return InMemoryDataset(ds.data.unsqueeze(1).contiguous(), ds.targets, [str(i) for i in range(10)])


def _cifar10_source(root: str) -> tuple[str, Path]:
    """Find CIFAR-10 under ROOT: torchvision's python batches, an image-folder tree, or its archive."""
    r = user_path(root, "--data")
    for base in (r, r / "cifar10", r / "cifar-10"):
        if (base / "cifar-10-batches-py").is_dir():
            return "torchvision", base
        if (base / "train").is_dir():
            return "folder", base
        for name in ("cifar10-jpeg.tar.gz", "cifar10.tar.gz", "cifar-10.tar.gz"):
            if (base / name).is_file():
                return "folder", resolve_folder(base / name)
    return "download", r


def _cifar10(root: str, train: bool, workers: int) -> InMemoryDataset:
    kind, base = _cifar10_source(root)
    if kind == "folder":
        split = "train" if train else "val"
        classes = None if train else list_folder(base, "train")[1]
        samples, classes = list_folder(base, split, classes)
        ds = FolderDataset(samples, classes, image_size=32)
        return _preload(ds, workers, f"decoding CIFAR-10 {split}")
    new = _created_by(str(base)) if kind == "download" else None
    try:
        ds = CIFAR10(str(base), train=train, download=kind == "download")
    except Exception as e:
        if new is not None:  # a failed download leaves no empty folders behind
            shutil.rmtree(new, ignore_errors=True)
        raise UserError(
            f"cifar10: no copy under {root} (cifar-10-batches-py/, a train/ test/ tree, or cifar10-jpeg.tar.gz) "
            f"and the download failed ({type(e).__name__})"
        ) from None
    images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
    return InMemoryDataset(images, torch.tensor(ds.targets), list(ds.classes))


def load_dataset(
    spec: str | DataSpec,
    split: str = "train",
    *,
    image_size: int = 256,
    channels: int = 3,
    workers: int = 2,
    cache_limit_bytes: int = 4 << 30,
    classes: list[str] | None = None,
    interpolation: str = "bilinear",
) -> Dataset:
    """The ``train`` or ``val`` split of a dataset SPEC.

    Usage: ``load_dataset("cifar10:../shared/data", "val")``. Folders are decoded at
    ``image_size`` with ``channels`` (MNIST and CIFAR-10 keep their native size and channels) and
    kept in memory when they fit in ``cache_limit_bytes``; ``classes`` checks a val split against
    the training classes; ``interpolation``: how folders' images are resized (Pillow's filter of that name).
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    s = spec if isinstance(spec, DataSpec) else DataSpec.parse(spec)
    if s.kind == "mnist":
        return _mnist(s.root, split == "train")
    if s.kind == "cifar10":
        return _cifar10(s.root, split == "train", workers)
    if is_shards(s.root) or is_packed(s.root):  # what prepare wrote: JPEG shards or a raw pack
        ds = load_shards(s.root, split) if is_shards(s.root) else load_packed(s.root, split)
        if classes is not None and list(ds.classes) != list(classes):
            raise UserError(f"--data {s.root}: the {split} split's classes differ from the training split's")
        return ds
    root = resolve_folder(s.root)
    if split == "val" and classes is None:
        _, classes = list_folder(root, "train")
    samples, found = list_folder(root, split, classes)
    folder = FolderDataset(samples, found, image_size=image_size, channels=channels, interpolation=interpolation)
    if len(samples) * channels * image_size * image_size <= cache_limit_bytes:
        return _preload(folder, workers, f"decoding {split}")
    return folder


def subset(ds: Any, n: int | None, seed: int) -> Any:
    """A seeded random subset of n images (in-memory datasets are copied, folders re-listed)."""
    if n is None or n >= len(ds):
        return ds
    return _pick(ds, torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n].sort().values)


def hold_out(ds: Any, fraction: float, seed: int) -> tuple[Any, Any]:
    """``ds`` split into (the rest, a held-out validation set of ``round(fraction x len)`` images),
    chosen at random by ``seed`` alone: the same split in every resume and in every process of a
    torchrun job (each builds it before the loader shards the rest)."""
    if not 0.0 < fraction < 1.0:
        raise UserError(f"--val-split {fraction}: must be a fraction between 0 and 1")
    n_held = round(fraction * len(ds))
    if n_held < 1 or n_held >= len(ds):
        raise UserError(
            f"--val-split {fraction}: holds out {n_held} of {len(ds)} training images; both parts need at least one"
        )
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(10_007 + seed))
    held, rest = order[:n_held].sort().values, order[n_held:].sort().values
    return _pick(ds, rest), _pick(ds, held)


def _pick(ds: Any, idx: torch.Tensor) -> Any:
    """The images of ``ds`` at ``idx`` (sorted), as a dataset of the same kind."""
    if hasattr(ds, "pick"):  # JPEG shards
        return ds.pick(idx)
    if isinstance(ds, InMemoryDataset):
        sub = InMemoryDataset(ds.images[idx].clone(), ds.labels[idx], ds.classes)
        if hasattr(ds, "meta"):  # a packed dataset's statistics still describe its training set
            sub.meta = ds.meta  # type: ignore[attr-defined]
        return sub
    sub = copy.copy(ds)
    sub.samples = [ds.samples[i] for i in idx.tolist()]
    return sub


def relabel(ds: Any, mapping: list[int], classes: list[str]) -> Any:
    """``ds`` with label ``y`` read as ``mapping[y]`` of ``classes`` (a dataset of some of a model's
    classes, seen with the model's class indices)."""
    if hasattr(ds, "relabel"):  # JPEG shards
        return ds.relabel(mapping, classes)
    if isinstance(ds, InMemoryDataset):
        out = InMemoryDataset(ds.images, torch.tensor(mapping, dtype=torch.long)[ds.labels], list(classes))
        if hasattr(ds, "meta"):
            out.meta = ds.meta  # type: ignore[attr-defined]
        return out
    out = copy.copy(ds)
    out.samples = [(p, mapping[y]) for p, y in ds.samples]
    out.classes = list(classes)
    out.skipped = ds.skipped
    return out
