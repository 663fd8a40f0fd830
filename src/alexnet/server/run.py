"""``alexnet serve``'s entry point: the model loaded (a run, checkpoint, export, hf-hub:ORG/NAME or an
ONNX file), checked, and served by uvicorn in one process or ``--workers N`` (each loads the model
itself; their metrics are summed through prometheus_client's multiprocess mode)."""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

from ..checkpoint import nonfinite_tensors, resolve_checkpoint
from ..data.datasets import cache_dir
from ..errors import UserError
from ..export import export_onnx
from ..files import file_sha256
from ..inference.classifier import load
from ..inference.onnx import OnnxClassifier
from ..runtime import return_freed_memory
from ..settings import serve_settings, set_serve_settings
from ..version import __version__
from .app import create_app
from .metrics import MULTIPROC_DIR
from .options import UVICORN_LIMITS, ServeOptions, check_dependencies, check_options, connection_limit
from .transport import TimedH11Protocol, check_uvicorn


def load_classifier(source: str, *, onnx: bool = False, device: str = "auto") -> tuple[Any, str]:
    """(classifier, backend) for a run, checkpoint, export folder, hf-hub:ORG/NAME or a .onnx file.

    ``onnx``: ONNX Runtime, with the run's ``model.onnx`` when there is one, else an export made once
    per checkpoint into the cache ($ALEXNET_CACHE, else ~/.cache/alexnet, under onnx/)."""
    if source.endswith(".onnx") or onnx:
        if source.endswith(".onnx"):
            return OnnxClassifier(source), "onnxruntime"
        p = Path(source)
        if (p / "model.onnx").is_file():
            return OnnxClassifier(p / "model.onnx"), "onnxruntime"
        # exported once per checkpoint into the cache (a restart reuses it; nothing left in /tmp)
        src = resolve_checkpoint(source)
        key = file_sha256(src / "model.safetensors" if src.is_dir() else src)[:16]
        path = cache_dir() / "onnx" / f"{key}-{__version__}.onnx"
        if not path.is_file():
            r = export_onnx(source, path)
            print(
                f"alexnet serve: exported {source} to {path} for ONNX Runtime (agrees with torch to "
                f"{r['max_abs_diff']:.1e}); `alexnet export {source} --format onnx` puts one in the run"
            )
        return OnnxClassifier(path), "onnxruntime"
    return load(source, device), "torch"


def app_from_env() -> Any:
    """The app for uvicorn's worker processes (``--workers N``): its settings come in ALEXNET_SERVE."""
    return_freed_memory()
    cfg = serve_settings()
    TimedH11Protocol.header_timeout = cfg["header_timeout"]
    TimedH11Protocol.max_connections = cfg["max_connections"]
    clf, backend = load_classifier(cfg["source"], onnx=cfg["onnx"], device=cfg["device"])
    return create_app(clf, ServeOptions(**cfg["options"]), backend=backend, source=cfg["source"])


def serve(
    source: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    onnx: bool = False,
    device: str = "auto",
    options: ServeOptions | None = None,
    log_level: str = "info",
    header_timeout: float = 10.0,
    max_connections: int | None = None,
) -> None:
    check_dependencies()
    check_uvicorn()
    import uvicorn  # optional: the [serve] extra

    opts = options or ServeOptions()
    check_options(opts, port=port, workers=workers, header_timeout=header_timeout, max_connections=max_connections)
    check_source_and_port(source, host, port)
    return_freed_memory()  # client-driven peaks (uploads, aborted bodies) go back to the system
    clf, backend = load_classifier(source, onnx=onnx, device=device)  # a bad RUN fails here, before binding
    check_finite(clf, source)
    TimedH11Protocol.header_timeout = header_timeout
    TimedH11Protocol.max_connections = connection_limit(max_connections)
    # the cap is the protocol's (idle connections make room; uvicorn's limit_concurrency would answer
    # 503 to every request while the cap's worth of idle connections is held)
    limits = {**UVICORN_LIMITS, "http": TimedH11Protocol}
    print(
        f"alexnet serve: {clf.name} ({len(clf.classes)} classes, {backend}) on http://{host}:{port}/ "
        f"(max batch {opts.max_batch}, max body {opts.max_bytes:,} bytes, {workers} worker{'s' * (workers > 1)})",
        flush=True,
    )
    if workers == 1:
        app = create_app(clf, opts, backend=backend, source=source)
        uvicorn.run(app, host=host, port=port, log_level=log_level, **limits)  # type: ignore[arg-type]
        return
    worker_settings = {
        "source": str(clf.path) if backend == "onnxruntime" else source,
        "onnx": backend == "onnxruntime",
        "device": device,
        "options": dataclasses.asdict(opts),
        "header_timeout": header_timeout,
        "max_connections": TimedH11Protocol.max_connections,
    }
    serve_workers(worker_settings, host=host, port=port, workers=workers, log_level=log_level, limits=limits)


def check_source_and_port(source: str, host: str, port: int) -> None:
    """A missing model is named first, then a port in use or a host that is not ours: one line each,
    before the model is loaded."""
    if source.endswith(".onnx"):
        if not Path(source).is_file():
            raise UserError(f"{source}: no such ONNX file")
    else:
        resolve_checkpoint(source)
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as e:
        raise UserError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e})") from None


def serve_workers(
    worker_settings: dict[str, Any], *, host: str, port: int, workers: int, log_level: str, limits: dict[str, Any]
) -> None:
    """uvicorn with ``workers`` processes, each building its app from ``worker_settings`` (app_from_env)."""
    import uvicorn

    # each worker loads what the parent found (an ONNX export made at start is not made again), and
    # writes its metrics where every worker's /metrics reads them all (prometheus_client reads the
    # variable when a worker imports it)
    set_serve_settings(worker_settings)
    with tempfile.TemporaryDirectory(prefix="alexnet-serve-metrics-") as folder:
        os.environ[MULTIPROC_DIR] = folder
        uvicorn.run(
            "alexnet.server.run:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            **limits,  # type: ignore[arg-type]
        )


def check_finite(clf: Any, source: str) -> None:
    """A model with NaN or infinite weights would answer every request with a 500 (NaN is not JSON):
    refused at start-up instead, naming the first such tensor."""
    model = getattr(clf, "model", None)
    if model is None:  # ONNX Runtime: its weights were checked against torch's when it was exported
        return
    bad = nonfinite_tensors(model.state_dict())
    if bad:
        raise UserError(f"{source}: its weights hold NaN or infinite values ({bad[0]}); not served")
