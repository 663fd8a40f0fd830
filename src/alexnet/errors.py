"""The one exception type for user mistakes: the CLI prints its message on one line, no traceback."""

import os
from pathlib import Path


class UserError(Exception):
    """A mistake in what the user asked for (a flag, a file, a config key), with a message that names it."""


def user_path(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` with ``~`` expanded; an unknown ``~user`` (or no home at all) is the user's mistake, named by ``what``."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        raise UserError(f"{what} {path}: cannot expand '~' (no such user or no home directory)") from None
