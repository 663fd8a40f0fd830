"""Files written whole or not at all: every output of the package goes through here.

A write goes to a temporary name in the destination's folder, is flushed to the disk, and is then
renamed over the destination, so a crash, a full disk or Ctrl-C at any moment leaves either the old
file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, cast

import torch

from .errors import UserError, user_path


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
            torch.save(obj, rec)  # type: ignore[arg-type]  # a file-like writer: torch only calls write()
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
        self.f, self.error = f, cast("OSError | None", None)

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


FIGURE_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg")


def figure_format(path: str | os.PathLike[str], flag: str = "--out") -> str:
    """The image format a figure's file name asks for; anything else is the user's mistake, named."""
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in FIGURE_FORMATS:
        raise UserError(f"{flag} {path}: not an image file name (.{', .'.join(FIGURE_FORMATS)})")
    return fmt


def atomic_savefig(fig: Any, path: str | os.PathLike[str], dpi: int) -> None:
    """A matplotlib figure written whole or not at all (``atomic_write``), in the format its name says."""
    fmt = figure_format(path)
    atomic_write(path, lambda f: fig.savefig(f, format="jpeg" if fmt == "jpg" else fmt, dpi=dpi))


def new_output(path: str | os.PathLike[str], flag: str, force: bool) -> Path:
    """An output the user named: refused, before any work, when it exists and ``--force`` is not
    given (an existing file is replaced only on purpose, and then atomically)."""
    p = user_path(path, flag)
    if p.is_dir():
        raise UserError(f"{flag} {path}: a folder; name the file to write")
    if p.exists() and not force:
        raise UserError(f"{flag} {path}: already exists; --force replaces it")
    return p


def new_folder(out: str | os.PathLike[str], flag: str = "--out") -> Path:
    """A folder to be written: refused, before any work, when it exists and is not an empty folder."""
    outp = Path(out)
    if outp.exists() and (not outp.is_dir() or any(outp.iterdir())):
        raise UserError(f"{flag} {outp}: already holds files; choose a new or empty folder")
    return outp


@contextlib.contextmanager
def staged_folder(out: str | os.PathLike[str], flag: str = "--out") -> Iterator[Path]:
    """``with staged_folder(out) as tmp:`` write a folder's files into ``tmp`` (a hidden sibling of ``out``);
    at the end it is renamed to ``out`` (which must be new or empty) in one step. Whatever fails (a
    read-only parent, a name under a file, a full disk) leaves no ``out`` and no half-written files,
    and a failure to write is one line naming the flag."""
    try:
        outp = new_folder(out, flag)  # again: it may have been filled since the caller checked
        outp.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{outp.name}.", suffix=".tmp", dir=outp.parent))
    except OSError as e:
        raise UserError(f"{flag} {outp}: cannot write there ({e.strerror or e})") from None
    try:
        yield tmp
        if outp.is_dir():
            outp.rmdir()  # empty, checked above
        os.replace(tmp, outp)
    except OSError as e:
        raise UserError(f"{flag} {outp}: cannot write there ({e.strerror or e}); nothing was left behind") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
