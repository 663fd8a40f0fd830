"""``alexnet serve``: a web page and a JSON API that classify uploaded images."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    sv = sub.add_parser(
        "serve",
        help="a web page and a JSON API that classify uploaded images",
        description="Serve a classifier over HTTP: GET / (a page), POST /v1/classify (multipart "
        "'file' fields or a raw image body, ?top_k=), GET /v1/model, /healthz, /metrics "
        "(Prometheus). Requests that arrive together are classified in one batch.",
    )
    sv.add_argument(
        "run", metavar="RUN_OR_EXPORT", help="a run folder, checkpoint, export folder, hf-hub:ORG/NAME or a model.onnx"
    )
    sv.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 for every interface)",
    )
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--workers", type=int, default=1, help="server processes, each with its own copy of the model")
    sv.add_argument("--max-batch", type=int, default=32, help="most images per forward pass (default: 32)")
    sv.add_argument(
        "--batch-window-ms",
        type=float,
        default=5.0,
        help="how long the first image of a batch waits for company (default: 5 ms)",
    )
    sv.add_argument("--max-bytes", default="20MB", help="largest request body; larger ones get 413 (default: 20MB)")
    sv.add_argument("--max-files", type=int, default=32, help="most files in one request (default: 32)")
    sv.add_argument(
        "--max-pixels",
        type=int,
        default=50_000_000,
        help="largest image in pixels; larger ones are refused as decompression bombs (default: 50M)",
    )
    sv.add_argument(
        "--max-request-pixels",
        type=int,
        default=100_000_000,
        help="most decoded pixels in one request, all its images together (read from their headers; a "
        "JPEG counts at the scale it is decoded at); more get 413 (default: 100M)",
    )
    sv.add_argument(
        "--max-pixels-in-flight",
        type=int,
        default=200_000_000,
        help="most pixels being decoded at once over all requests; an image waits up to 10 s for room, "
        "then 503 (default: 200M, about 0.6-1.4 GB)",
    )
    sv.add_argument("--top-k", type=int, default=5, help="classes per image when the request does not say")
    sv.add_argument(
        "--onnx",
        action="store_true",
        help="run the model with ONNX Runtime (the run's model.onnx, "
        "else one exported once per checkpoint into ~/.cache/alexnet/onnx)",
    )
    sv.add_argument("--device", default="auto")
    sv.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="a connection must send a request's line and headers within S seconds, else 408 and closed (default: 10)",
    )
    sv.add_argument(
        "--body-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="a request body may go S seconds without a byte, else 408 (default: 30)",
    )
    sv.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help="requests beyond N open connections get 503 (default: the open-file limit, raised to its "
        "hard limit, less 128)",
    )
    sv.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    sv.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..server.options import ServeOptions, check_dependencies, parse_size

    check_dependencies()  # before the server's modules import fastapi, uvicorn and prometheus_client
    from ..server.run import serve

    opts = ServeOptions(
        max_batch=args.max_batch,
        max_bytes=parse_size(args.max_bytes),
        max_files=args.max_files,
        max_pixels=args.max_pixels,
        batch_window_ms=args.batch_window_ms,
        top_k=args.top_k,
        body_timeout=args.body_timeout,
        max_request_pixels=args.max_request_pixels,
        max_pixels_in_flight=args.max_pixels_in_flight,
    )
    serve(
        args.run,
        host=args.host,
        port=args.port,
        workers=args.workers,
        onnx=args.onnx,
        device=args.device,
        options=opts,
        log_level=args.log_level,
        header_timeout=args.header_timeout,
        max_connections=args.max_connections,
    )
    return 0
