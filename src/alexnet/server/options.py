"""``alexnet serve``'s settings: the limits (``ServeOptions``), their checks before anything is
loaded, the optional dependencies, and uvicorn's own limits."""

from __future__ import annotations

import resource
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from ..errors import UserError

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 50_000_000  # 150 MB decoded as RGB: a server refuses more than a file reader does
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
PAGE = Path(__file__).with_name("page.html")

# SIGTERM: requests in flight get this long, then the server stops (a stalled upload cannot hold it);
# an idle kept-alive connection is closed after this long. backlog: asyncio accepts up to this many
# connections in one go before any of them reaches the protocol that caps them, and an evicted one's
# descriptor is closed a loop iteration or two later: uvicorn's 2,048 let a burst of idle connections
# take every descriptor above the cap (64: one EMFILE per run of the 1,000-connection test); 32 keeps
# three bursts within connection_limit's margin of 128 descriptors
UVICORN_LIMITS = {"timeout_graceful_shutdown": 5, "timeout_keep_alive": 5, "backlog": 32}


@dataclass
class ServeOptions:
    max_batch: int = 32
    max_bytes: int = DEFAULT_MAX_BYTES
    max_files: int = 32
    max_pixels: int = DEFAULT_MAX_PIXELS
    batch_window_ms: float = 5.0
    top_k: int = 5
    body_timeout: float = 30.0  # seconds a request body may go without a byte arriving, then 408
    max_request_pixels: int = 2 * DEFAULT_MAX_PIXELS  # decoded pixels of all of a request's images, else 413
    max_pixels_in_flight: int = 4 * DEFAULT_MAX_PIXELS  # decoded pixels being decoded at once, all requests
    pixel_wait: float = 10.0  # seconds an image waits for room in the in-flight budget, then 503


def check_options(
    opts: ServeOptions, *, port: int, workers: int, header_timeout: float, max_connections: int | None
) -> None:
    """Every flag's range, the flag named in one line, before anything is loaded."""
    checks = (
        ("--port", port, 0 <= port < 65536, "0..65535"),
        ("--top-k", opts.top_k, opts.top_k >= 1, "at least 1"),
        ("--max-pixels", opts.max_pixels, opts.max_pixels >= 1, "at least 1"),
        (
            "--max-request-pixels",
            opts.max_request_pixels,
            opts.max_request_pixels >= opts.max_pixels,
            f"at least --max-pixels ({opts.max_pixels:,})",
        ),
        (
            "--max-pixels-in-flight",
            opts.max_pixels_in_flight,
            opts.max_pixels_in_flight >= opts.max_pixels,
            f"at least --max-pixels ({opts.max_pixels:,}): an image that size must fit",
        ),
        ("--max-batch", opts.max_batch, opts.max_batch >= 1, "at least 1"),
        ("--max-files", opts.max_files, opts.max_files >= 1, "at least 1"),
        ("--workers", workers, workers >= 1, "at least 1"),
        ("--batch-window-ms", opts.batch_window_ms, opts.batch_window_ms >= 0, "at least 0"),
        ("--header-timeout", header_timeout, 0 < header_timeout < 3600, "in (0, 3600) s"),
        ("--body-timeout", opts.body_timeout, 0 < opts.body_timeout < 3600, "in (0, 3600) s"),
        ("--max-connections", max_connections, max_connections is None or max_connections >= 1, "at least 1"),
    )
    for flag, value, ok, rule in checks:
        if not ok:
            raise UserError(f"{flag} {value}: must be {rule}")


def check_dependencies() -> None:
    """The [serve] extra's packages, named in one line when missing."""
    missing = [
        name
        for name, mods in (
            ("fastapi", ["fastapi"]),
            ("uvicorn", ["uvicorn"]),
            ("python-multipart", ["python_multipart", "multipart"]),
            ("prometheus-client", ["prometheus_client"]),
        )
        if not any(find_spec(m) for m in mods)
    ]
    if missing:
        raise UserError(f'serve needs {", ".join(missing)}: pip install -e ".[serve]"')


def parse_size(text: str | int) -> int:
    """``20MB``, ``512KB``, ``1GB`` or a number of bytes."""
    s = str(text).strip().upper().replace("IB", "B")
    for suffix, mult in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10), ("B", 1)):
        if s.endswith(suffix):
            s, m = s[: -len(suffix)].strip(), mult
            break
    else:
        m = 1
    try:
        n = int(float(s) * m)  # inf and nan do not make an int: OverflowError, ValueError
    except (ValueError, OverflowError):
        raise UserError(f"--max-bytes {text}: not a size (e.g. 20MB, 512KB, 1000000)") from None
    if n < 1:
        raise UserError(f"--max-bytes {text}: must be positive")
    return n


def connection_limit(requested: int | None) -> int:
    """Concurrent connections served before new requests get 503: ``requested``, else the process's
    open-file limit (raised to its hard limit first) less a margin for the model's and the log's files,
    so that the accept loop never runs out of descriptors ("Too many open files")."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        try:
            resource.setrlimit(
                resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else max(soft, 65536), hard)
            )
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        except (ValueError, OSError):
            pass
    ceiling = max(16, soft - 128)
    if requested is None:
        return ceiling
    if requested > ceiling:
        raise UserError(
            f"--max-connections {requested}: more than this process can hold open (at most {ceiling}, "
            f"from its open-file limit {soft})"
        )
    return requested
