"""Every ``ALEXNET_*`` environment variable, read here and only here (a test keeps it so), with what
each does; ``docs/reference.md`` lists them from ``VARIABLES``.

Only the standard library: the lowest layer, imported by any module.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import UserError

VARIABLES: dict[str, str] = {
    "ALEXNET_DATA_ROOT": "where `mnist` and `cifar10` without `:ROOT` look (default: ./data)",
    "ALEXNET_CACHE": "where archives are extracted and ONNX exports cached (default: ~/.cache/alexnet)",
    "ALEXNET_MAX_EXTRACT_BYTES": "refuse to extract an archive that would expand beyond this many bytes "
    "(default: no cap but the disk's free space)",
    "ALEXNET_DIST_TIMEOUT": "seconds a torchrun job's join and each collective may wait (default: torch's 30 minutes)",
    "ALEXNET_MALLOC_CACHE": "0: leave glibc's malloc as it is (default: keep freed buffers for reuse; "
    "docs/performance.md)",
    "ALEXNET_NATIVE": "the fused response-norm CPU kernel: 0 off, 1 a build failure is an error (default: auto)",
    "ALEXNET_TRITON": "0: never use the Triton response-norm kernels on a GPU (default: auto)",
    "ALEXNET_SERVE": "internal: `alexnet serve --workers N` passes its settings to the worker processes",
}
_OFF = ("0", "off", "false", "no")


def _get(name: str, default: str = "") -> str:
    assert name in VARIABLES, name
    return os.environ.get(name, default)


def data_root() -> str:
    return _get("ALEXNET_DATA_ROOT", "data")


def cache_dir() -> Path:
    return Path(_get("ALEXNET_CACHE") or Path.home() / ".cache" / "alexnet")


def max_extract_bytes() -> int | None:
    value = _get("ALEXNET_MAX_EXTRACT_BYTES", "0") or "0"
    try:
        return int(value) or None
    except ValueError:
        raise UserError(f"ALEXNET_MAX_EXTRACT_BYTES={value}: must be a whole number of bytes") from None


def dist_timeout() -> float | None:
    """Seconds, or None for torch's default."""
    value = _get("ALEXNET_DIST_TIMEOUT")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise UserError(f"ALEXNET_DIST_TIMEOUT={value}: must be a positive number of seconds")
    return seconds


def malloc_cache() -> bool:
    return _get("ALEXNET_MALLOC_CACHE", "1") != "0"


def native_kernel() -> str:
    """ "off", "on" (a build failure is an error) or "auto"."""
    value = _get("ALEXNET_NATIVE", "auto").lower()
    return "off" if value in _OFF else "on" if value in ("1", "on", "true", "yes") else "auto"


def triton_allowed() -> bool:
    return _get("ALEXNET_TRITON", "auto").lower() not in _OFF


def serve_settings() -> dict[str, Any]:
    return json.loads(_get("ALEXNET_SERVE", "{}"))


def set_serve_settings(settings: dict[str, Any]) -> None:
    os.environ["ALEXNET_SERVE"] = json.dumps(settings)
