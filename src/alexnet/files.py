"""Files written whole or not at all: every output of the package goes through here.

A write goes to a temporary name in the destination's folder, is flushed to the disk, and is then
renamed over the destination, so a crash, a full disk or Ctrl-C at any moment leaves either the old
file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, IO

import torch


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, fsync it, rename it over ``path`` and fsync
    the folder. The temporary file is removed whatever goes wrong."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` through ``atomic_write``."""

    def write(f: IO[bytes]) -> None:
        rec = _RecordingWriter(f)
        try:
            torch.save(obj, rec)
        except RuntimeError:
            # torch's zip writer turns a failed write (a full disk) into "unexpected pos";
            # the OSError behind it is what the caller can report
            if rec.error is not None:
                raise rec.error from None
            raise

    atomic_write(path, write)


class _RecordingWriter:
    """A file's write(), remembering the first OSError (torch.save hides it behind a RuntimeError)."""

    def __init__(self, f: Any) -> None:
        self.f, self.error = f, None

    def write(self, data: Any) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        self.f.flush()


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
