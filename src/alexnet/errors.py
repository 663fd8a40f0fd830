"""The exception types the CLI prints on one line, no traceback: a user's mistake (exit 2), and a
self-check of ours that failed (exit 3: a bug to report, not the user's doing)."""

import os
from pathlib import Path


class UserError(Exception):
    """A mistake in what the user asked for (a flag, a file, a config key), with a message that names it."""


class CheckFailed(Exception):
    """A result that failed the check it is made with before it is written (an ONNX export that
    disagrees with torch): nothing was written, and the fault is ours, not the user's."""


def printable(text: object) -> str:
    """``text`` as printed: control characters (a newline, a terminal escape) escaped, so that a
    hostile file name cannot forge output lines or drive the terminal. Every line that names a file
    (errors, warnings, summaries) goes through this one function."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in s)


def user_path(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` with ``~`` expanded; an unknown ``~user`` (or no home at all) is the user's mistake,
    named by ``what``."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        raise UserError(f"{what} {path}: cannot expand '~' (no such user or no home directory)") from None
