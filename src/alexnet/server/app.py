"""``alexnet serve``: a trained classifier behind a URL, a web page and a JSON API.

    alexnet serve RUN_OR_EXPORT [--host 127.0.0.1] [--port 8000] [--workers N] [--max-batch 32] [--onnx]

    GET  /              a page: drop or choose images, see the top-5 classes as bars
    POST /v1/classify   multipart (one or more ``file`` fields) or a raw image body; ?top_k=5
    GET  /v1/model      name, options, classes, eval transform, metrics, version
    GET  /healthz       {"status": "ok"}
    GET  /metrics       request counts and latency histograms, Prometheus text format

Images that arrive together are classified in one batch: each decoded image joins a queue, and one
task takes up to ``--max-batch`` of them at a time (waiting at most ``--batch-window-ms`` for more
once the first has come) and runs the network on a worker thread, so the event loop keeps accepting
and decoding while the model runs. Decoding runs on threads too.

Every limit answers with a JSON body ``{"error": ..., "status": ...}`` (and ``"filename"`` where one
file is to blame), and the server keeps serving: a body over ``--max-bytes`` -> 413, more than
``--max-files`` files -> 413, not an image -> 415, a truncated or corrupt image or a decompression
bomb -> 400, a malformed request (no file, a bad ``top_k``, a broken multipart body) -> 422.
"""
# no ``from __future__ import annotations`` in this module: FastAPI reads the endpoints' annotations

import asyncio
import bisect
import dataclasses
import errno
import json
import math
import os
import resource
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

try:  # optional: the [serve] extra (checked with a one-line message before serving)
    from uvicorn.protocols.http.h11_impl import H11Protocol
except ImportError:  # pragma: no cover - serve() says what to install
    H11Protocol = asyncio.Protocol

from ..checkpoint import nonfinite_tensors, resolve_checkpoint
from ..data.datasets import cache_dir
from ..data.images import ImageError, NotAnImageError, decode_opened, decoded_pixels, open_upload, resize_center_square
from ..errors import UserError
from ..export import export_onnx
from ..files import file_sha256
from ..inference.classifier import load
from ..inference.onnx import OnnxClassifier
from ..runtime import return_freed_memory, trim_freed_memory
from ..version import __version__

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 50_000_000  # 150 MB decoded as RGB: a server refuses more than a file reader does
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
PAGE = Path(__file__).with_name("page.html")


def _deps() -> None:
    missing = [
        name
        for name, mods in (
            ("fastapi", ["fastapi"]),
            ("uvicorn", ["uvicorn"]),
            ("python-multipart", ["python_multipart", "multipart"]),
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


# ------------------------------------------------------------------------------------------ metrics


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets, self.counts, self.sum, self.count = buckets, [0] * len(buckets), 0.0, 0

    def observe(self, v: float) -> None:
        i = bisect.bisect_left(self.buckets, v)
        if i < len(self.counts):
            self.counts[i] += 1
        self.sum += v
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        out, acc, sep = [], 0, "," if labels else ""
        for b, c in zip(self.buckets, self.counts):
            acc += c
            out.append(f'{name}_bucket{{{labels}{sep}le="{b:g}"}} {acc}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        lab = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{lab} {self.sum:.6f}", f"{name}_count{lab} {self.count}"]
        return out


@dataclass
class Metrics:
    """Counters and histograms of one server process, written in Prometheus' text format."""

    requests: dict[tuple[str, str, int], int] = field(default_factory=dict)
    latency: dict[str, Histogram] = field(default_factory=dict)
    batch_size: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))
    images: int = 0
    image_errors: int = 0
    started: float = field(default_factory=time.time)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, method: str, path: str, status: int, seconds: float) -> None:
        with self.lock:
            key = (method, path, status)
            self.requests[key] = self.requests.get(key, 0) + 1
            self.latency.setdefault(path, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def text(self) -> str:
        with self.lock:
            out = [
                "# HELP alexnet_requests_total HTTP requests by method, path and status.",
                "# TYPE alexnet_requests_total counter",
            ]
            out += [
                f'alexnet_requests_total{{method="{m}",path="{p}",status="{s}"}} {n}'
                for (m, p, s), n in sorted(self.requests.items())
            ]
            out += [
                "# HELP alexnet_request_duration_seconds Time from request to response, by path.",
                "# TYPE alexnet_request_duration_seconds histogram",
            ]
            for p, h in sorted(self.latency.items()):
                out += h.lines("alexnet_request_duration_seconds", f'path="{p}"')
            out += [
                "# HELP alexnet_batch_size Images per forward pass of the network.",
                "# TYPE alexnet_batch_size histogram",
                *self.batch_size.lines("alexnet_batch_size"),
                "# HELP alexnet_images_total Images classified.",
                "# TYPE alexnet_images_total counter",
                f"alexnet_images_total {self.images}",
                "# HELP alexnet_image_errors_total Uploads refused as not an image, corrupt or too large.",
                "# TYPE alexnet_image_errors_total counter",
                f"alexnet_image_errors_total {self.image_errors}",
                "# HELP alexnet_process_start_time_seconds Start of this server process (Unix time).",
                "# TYPE alexnet_process_start_time_seconds gauge",
                f"alexnet_process_start_time_seconds {self.started:.3f}",
            ]
            return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------ batching


class Batcher:
    """Classifies images queued by concurrent requests in batches of up to ``max_batch``."""

    def __init__(self, clf: Any, max_batch: int, window_s: float, metrics: Metrics) -> None:
        self.clf, self.max_batch, self.window_s, self.metrics = clf, max_batch, window_s, metrics
        self.queue: asyncio.Queue[tuple[Any, int, asyncio.Future[Any]]] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="alexnet-model")  # one forward pass at a time
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def classify(self, images: list[Any], top_k: int) -> list[Any]:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in images]
        for im, fut in zip(images, futures):
            self.queue.put_nowait((im, top_k, fut))
        return list(await asyncio.gather(*futures))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.window_s
            while len(batch) < self.max_batch:
                if not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                    continue
                wait = deadline - loop.time()
                if wait <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), wait))
                except asyncio.TimeoutError:
                    break
            batch = [b for b in batch if not b[2].cancelled()]  # a client that went away
            if not batch:
                continue
            k = max(b[1] for b in batch)
            try:
                preds = await loop.run_in_executor(self.executor, self.clf.predict_images, [b[0] for b in batch], k)
            except Exception as e:  # the model itself failed: every waiting request learns it
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            self.metrics.batch_size.observe(len(batch))
            self.metrics.images += len(batch)
            for (_, _, fut), p in zip(batch, preds):
                if not fut.done():
                    fut.set_result(p)


# ------------------------------------------------------------------------------------------ the app


class _Stalled(Exception):
    """A request body that stopped arriving (``--body-timeout``)."""


class _TooLarge(Exception):
    """The body passed --max-bytes while it was being read."""


def _too_large(max_bytes: int) -> str:
    return f"request body over the {max_bytes:,}-byte limit (--max-bytes)"


class ApiError(Exception):
    def __init__(self, status: int, message: str, filename: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.filename = status, message, filename


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


class PixelBudget:
    """The decoded pixels held at once by every request's decoding (an image is decoded at full size,
    or a JPEG at its draft scale, before it is shrunk to the model's): an image waits for room, up to
    ``wait_s`` seconds, then the request gets 503. Bounds the server's decoding memory whatever the
    number of concurrent requests (each pixel is 1-4 bytes decoded, 3 more while converted to RGB)."""

    def __init__(self, limit: int, wait_s: float) -> None:
        self.limit, self.wait_s, self.used, self.waiting = limit, wait_s, 0, 0
        self._cond: asyncio.Condition | None = None

    async def acquire(self, n: int) -> None:
        if self.used + n <= self.limit:  # room now: no lock, no task (as a waiter's recheck would find)
            self.used += n
            return
        if self._cond is None:  # made in the event loop that uses it
            self._cond = asyncio.Condition()
        self.waiting += 1
        try:
            async with self._cond:
                await asyncio.wait_for(self._cond.wait_for(lambda: self.used + n <= self.limit), self.wait_s)
                self.used += n
        except asyncio.TimeoutError:
            raise ApiError(
                503, f"busy: {self.used:,} pixels are being decoded (--max-pixels-in-flight {self.limit:,}); retry"
            ) from None
        finally:
            self.waiting -= 1

    async def release(self, n: int) -> None:
        self.used -= n
        if self.waiting and self._cond is not None:
            async with self._cond:
                self._cond.notify_all()


# what the API answers besides 200, each a JSON ``{"error", "status"[, "filename"]}``
ERROR_RESPONSES = {
    400: "an image that cannot be decoded (truncated, corrupt, a decompression bomb), named by `filename`",
    408: "the request body stopped arriving (--body-timeout) or its headers did not come (--header-timeout)",
    413: "a body over --max-bytes, more files than --max-files, more decoded pixels than --max-request-pixels",
    415: "a content type other than an image or multipart/form-data, or a file that is not an image",
    422: "a malformed request: top_k below 1, no 'file' field, an empty body",
    503: "busy: the decoding budget (--max-pixels-in-flight) stayed full, or the connection limit was reached",
}


# the request body of /v1/classify: multipart 'file' fields (one or more images) or one raw image
def classify_body(max_files: int, max_bytes: int) -> dict[str, Any]:
    """The request body of /v1/classify as OpenAPI says it: multipart 'file' fields (1 to --max-files
    images) or one raw image, never empty (422). --max-bytes (413) is the description's: JSON Schema's
    maxLength counts characters, and API testers read it so of binary data."""
    binary = {
        "type": "string",
        "format": "binary",
        "minLength": 1,
        "description": f"an image file's bytes; a body over {max_bytes:,} bytes gets 413 (--max-bytes)",
    }
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "array", "items": binary, "minItems": 1, "maxItems": max_files}},
                }
            },
            "image/png": {"schema": binary},
            "image/jpeg": {"schema": binary},
            "application/octet-stream": {"schema": binary},
        },
    }


def api_schemas() -> dict[str, Any]:
    """The pydantic models the OpenAPI schema describes the answers with (pydantic comes with FastAPI)."""
    from pydantic import BaseModel, ConfigDict, Field

    class Error(BaseModel):
        error: str = Field(description="what went wrong, one line, naming the flag or the file")
        status: int
        filename: str | None = Field(None, description="the file the error is about, when there is one")

    class Health(BaseModel):
        status: str

    class Prediction(BaseModel):
        label: str
        index: int
        prob: float = Field(ge=0.0, le=1.0)

    class Result(BaseModel):
        filename: str
        top: list[Prediction]
        ms: float

    class Classification(BaseModel):
        model: str
        results: list[Result]

    class ModelInfo(BaseModel):
        model_config = ConfigDict(extra="allow", protected_namespaces=())
        name: str
        num_classes: int
        classes: list[str]
        backend: str

    return {"Error": Error, "Health": Health, "Classification": Classification, "ModelInfo": ModelInfo}


def model_description(clf: Any, backend: str, source: str) -> dict[str, Any]:
    if backend == "onnxruntime":
        meta = clf.metadata
        options, transform, metrics = meta.get("model_options", {}), clf.transform, meta.get("metrics", {})
    else:
        ck = clf.checkpoint
        options, metrics = ck.get("model_options", {}), ck.get("metrics") or {}
        transform = clf.transform.to_dict()
        transform["mean_image"] = None if clf.transform.mean_image is None else "per-pixel mean image"
    metrics = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) and v == v}
    out = {
        "name": clf.name,
        "options": options,
        "num_classes": len(clf.classes),
        "classes": list(clf.labels),
        "eval_transform": transform,
        "metrics": metrics,
        "version": __version__,
        "backend": backend,
        "source": source,
    }
    if backend == "onnxruntime":
        out["onnx_file"] = str(clf.path)
    return out


def create_app(clf: Any, options: ServeOptions | None = None, *, backend: str = "torch", source: str = "") -> Any:
    """The FastAPI application serving ``clf`` (a ``Classifier`` or an ``OnnxClassifier``)."""
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    opts = options or ServeOptions()
    metrics = Metrics()
    budget = PixelBudget(opts.max_pixels_in_flight, opts.pixel_wait)
    info = model_description(clf, backend, source)
    page = PAGE.read_text(encoding="utf-8")
    state: dict[str, Batcher] = {}

    @asynccontextmanager
    async def lifespan(app: Any):  # type: ignore[no-untyped-def]
        state["batcher"] = Batcher(clf, opts.max_batch, opts.batch_window_ms / 1000, metrics)
        state["batcher"].start()
        asyncio.get_running_loop().set_exception_handler(AcceptErrors())  # one line per 10 s, not a flood
        yield
        await state["batcher"].stop()

    app = FastAPI(title="alexnet serve", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)

    def error(status: int, message: str, filename: str | None = None) -> JSONResponse:
        body: dict[str, Any] = {"error": message, "status": status}
        if filename is not None:
            body["filename"] = filename
        return JSONResponse(body, status_code=status)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError) -> JSONResponse:
        return error(e.status, e.message, e.filename)

    @app.exception_handler(_Stalled)
    async def _body_stalled(request: Request, e: _Stalled) -> JSONResponse:
        r = error(408, f"the request body stopped arriving (no byte for {opts.body_timeout:g} s; --body-timeout)")
        r.headers["connection"] = "close"
        return r

    @app.exception_handler(_TooLarge)
    async def _body_too_large(request: Request, e: _TooLarge) -> JSONResponse:
        return error(413, _too_large(opts.max_bytes))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("query", "body"))
        return error(422, f"malformed request: {where + ': ' if where else ''}{first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        r = error(e.status_code, str(e.detail))
        r.headers.update(e.headers or {})  # a 405's Allow (RFC 9110 requires it)
        return r

    schemas = api_schemas()
    errors = {code: {"model": schemas["Error"], "description": why} for code, why in ERROR_RESPONSES.items()}

    @app.api_route(
        "/",
        methods=["GET", "HEAD"],
        response_class=HTMLResponse,
        responses={200: {"content": {"text/html": {}}, "description": "the page"}},
    )
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/healthz", response_model=schemas["Health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/model", response_model=schemas["ModelInfo"])
    async def model() -> dict[str, Any]:
        return info

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={
            200: {
                "content": {"text/plain": {"schema": {"type": "string"}}},
                "description": "Prometheus text format 0.0.4",
            }
        },
    )
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.text(), media_type="text/plain; version=0.0.4")

    @app.post(
        "/v1/classify",
        response_model=schemas["Classification"],
        responses={k: v for k, v in errors.items()},
        openapi_extra={"requestBody": classify_body(opts.max_files, opts.max_bytes)},
    )
    async def classify(
        request: Request,
        top_k: int | None = Query(None, ge=1, description="classes per image (default: the server's --top-k)"),
        filename: str = Query("image", description="the name a raw image body is reported under"),
    ) -> JSONResponse:
        t0 = time.perf_counter()
        k = opts.top_k if top_k is None else top_k
        if k < 1:
            raise ApiError(422, f"malformed request: top_k must be at least 1, not {k}")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        files: list[tuple[str, bytes]] = []
        if ctype == "multipart/form-data":
            from starlette.datastructures import UploadFile
            from starlette.formparsers import MultiPartException
            from starlette.requests import ClientDisconnect

            try:
                form = await request.form(max_files=opts.max_files, max_fields=opts.max_files + 16)
            except ClientDisconnect:  # the client went away mid-upload: nothing to answer, no traceback
                raise ApiError(400, "the client disconnected during the upload")
            except (MultiPartException, StarletteHTTPException) as e:  # starlette wraps the first in the second
                msg = str(getattr(e, "message", None) or getattr(e, "detail", None) or e)
                if "Too many files" in msg:
                    raise ApiError(413, f"too many files in one request (at most {opts.max_files}; --max-files)")
                raise ApiError(422, f"malformed request: {msg}")
            try:
                for key, value in form.multi_items():
                    if isinstance(value, UploadFile):
                        if key != "file":
                            raise ApiError(422, f"malformed request: upload field {key!r}; send images as 'file'")
                        files.append((value.filename or "file", await value.read()))
            finally:
                await form.close()
            if not files:
                raise ApiError(422, "malformed request: no 'file' field in the multipart body")
        elif ctype.startswith("image/") or ctype in ("application/octet-stream", ""):
            from starlette.requests import ClientDisconnect

            try:
                files.append((filename, await request.body()))
            except ClientDisconnect:
                raise ApiError(400, "the client disconnected during the upload")
            if not files[0][1]:
                raise ApiError(422, "malformed request: an empty body; send an image (or multipart 'file' fields)")
        else:
            raise ApiError(415, f"unsupported content type {ctype!r}: send an image body or multipart/form-data")
        if len(files) > opts.max_files:
            raise ApiError(413, f"too many files in one request ({len(files)}; at most {opts.max_files}; --max-files)")

        # each upload's header read once, here; the decoded pixels from it: over the request's budget ->
        # 413 before any decoding (an image over --max-pixels is refused on its own, 400, and never
        # decoded: it counts 0, as does one whose header is unreadable, reported when its turn comes)
        opened: list[Any] = []
        for _, data in files:
            try:
                opened.append(open_upload(data))
            except ImageError as e:
                opened.append(e)
        sizes = [
            0 if isinstance(img, ImageError) or (n := decoded_pixels(img, clf.image_size)) > opts.max_pixels else n
            for img in opened
        ]
        if sum(sizes) > opts.max_request_pixels:
            raise ApiError(
                413,
                f"{sum(sizes):,} decoded pixels in this request's {len(files)} image(s), over the "
                f"{opts.max_request_pixels:,}-pixel limit (--max-request-pixels)",
            )

        def decode(name: str, img: Any) -> Any:
            try:  # shrunk to the model's scale at once: a request holds small squares, not full decodes
                if isinstance(img, ImageError):
                    raise img
                return resize_center_square(
                    decode_opened(img, 3 if clf.channels == 3 else 1, clf.image_size, opts.max_pixels), clf.image_size
                )
            except ImageError as e:
                with metrics.lock:
                    metrics.image_errors += 1
                raise ApiError(415 if isinstance(e, NotAnImageError) else 400, f"{name}: {e}", name) from None

        images = []
        for (name, _), img, n in zip(files, opened, sizes):  # one at a time, each within the budget of all requests
            await budget.acquire(n)
            try:
                images.append(await run_in_threadpool(decode, name, img))
            finally:
                await budget.release(n)
        preds = await state["batcher"].classify(images, k)
        ms = round((time.perf_counter() - t0) * 1000, 2)
        return JSONResponse(
            {
                "model": clf.name,
                "results": [
                    {
                        "filename": name,
                        "top": [
                            {"label": lab, "index": i, "prob": p}
                            for lab, i, p in zip(pr.labels[:k], pr.indices[:k], pr.probs[:k])
                        ],
                        "ms": ms,
                    }
                    for (name, _), pr in zip(files, preds)
                ],
            }
        )

    return Guard(app, opts.max_bytes, metrics, opts.body_timeout)


KNOWN_PATHS = {"/", "/healthz", "/v1/model", "/metrics", "/v1/classify", "/docs", "/openapi.json"}
# /metrics labels: any other method token is "other", as any other path is (a label per random token
# a client invents would grow /metrics without bound)
KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}
TRIM_AFTER_BYTES = 1 << 20  # a request that brought this much body trims the allocator's arenas after it


if sys.version_info >= (3, 11):

    async def _within(aw: Any, seconds: float) -> Any:
        """``await aw``, or ``asyncio.TimeoutError`` after ``seconds``. ``asyncio.timeout`` (3.11) runs
        it in the calling task; ``wait_for`` (3.10) wraps it in a task of its own, about 15 us more
        per body chunk."""
        async with asyncio.timeout(seconds):
            return await aw
else:

    async def _within(aw: Any, seconds: float) -> Any:
        return await asyncio.wait_for(aw, seconds)


class Guard:
    """ASGI middleware around the app: counts and times every request for /metrics, and gives a body
    over ``max_bytes`` 413 without keeping it (by its Content-Length when it has one, else when the
    bytes received pass the limit: the app's handler for ``_TooLarge`` answers then). The rest of a
    refused body is read and dropped, up to 4 x ``max_bytes``, so that the client sees the 413.

    Plain ASGI rather than FastAPI's ``@app.middleware("http")``, which runs the app in a task group
    and turns an exception raised while the body is read into an exception group (a 500)."""

    def __init__(self, app: Any, max_bytes: int, metrics: Metrics, body_timeout: float = 30.0) -> None:
        self.app, self.max_bytes, self.metrics, self.body_timeout = app, max_bytes, metrics, body_timeout
        self.drain_limit = 4 * max_bytes  # bodies larger than this are cut off unread

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status, received = time.perf_counter(), [500], [0]
        try:
            await self._guarded(scope, receive, send, status, received)
        finally:
            path, method = scope.get("path", ""), scope.get("method", "")
            self.metrics.record(
                method if method in KNOWN_METHODS else "other",
                path if path in KNOWN_PATHS else "other",
                status[0],
                time.perf_counter() - t0,
            )
            if received[0] >= TRIM_AFTER_BYTES:  # its chunks, kept or aborted, go back to the system
                await asyncio.get_running_loop().run_in_executor(None, trim_freed_memory)

    async def _guarded(
        self, scope: dict, receive: Callable, send: Callable, status: list[int], counted: list[int]
    ) -> None:
        message = _too_large(self.max_bytes).encode()
        length = dict(scope.get("headers") or []).get(b"content-length")
        try:
            too_big = length is not None and int(length) > self.max_bytes
        except ValueError:
            too_big = False
        if too_big:
            status[0] = 413
            if int(length) <= self.drain_limit:  # type: ignore[arg-type]
                await self._drain(receive, int(length))  # type: ignore[arg-type]
            return await self._reply_413(send, message)
        received, started = 0, False

        async def limited_receive() -> dict:
            nonlocal received
            try:  # a client that stops sending its body holds the request (and its buffer) for ever
                msg = await _within(receive(), self.body_timeout)
            except asyncio.TimeoutError:
                raise _Stalled from None
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                counted[0] = received
                if received > self.max_bytes:
                    if msg.get("more_body"):
                        await self._drain(receive, self.drain_limit - received)
                    raise _TooLarge
            return msg

        async def tracking_send(msg: dict) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started, status[0] = True, int(msg["status"])
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:  # raised where no handler of the app saw it
            if not started:
                status[0] = 413
                await self._reply_413(send, message)
        except _Stalled:
            if not started:
                status[0] = 408

    async def _drain(self, receive: Callable, budget: int) -> None:
        """Read and drop the rest of a refused body (up to ``budget`` bytes) before answering: a
        server that answers and closes while the client is still sending makes the client see a
        broken pipe instead of the 413 (1 to 9 of the oversized uploads in 10 s of load on loopback, before
        this was added; none since: the load test counts them)."""
        while budget > 0:
            msg = await receive()
            if msg["type"] != "http.request":
                return
            budget -= len(msg.get("body", b""))
            if not msg.get("more_body"):
                return

    @staticmethod
    async def _reply_413(send: Callable, message: bytes) -> None:
        body = json.dumps({"error": message.decode(), "status": 413}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------------------------------ loading


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
    cfg = json.loads(os.environ["ALEXNET_SERVE"])
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
    _deps()
    import uvicorn  # optional: the [serve] extra

    opts = options or ServeOptions()
    for flag, value, ok, rule in (
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
    ):
        if not ok:  # the flag named, one line, before anything is loaded
            raise UserError(f"{flag} {value}: must be {rule}")
    if source.endswith(".onnx"):  # a missing model is named first, then the port, then the model is loaded
        if not Path(source).is_file():
            raise UserError(f"{source}: no such ONNX file")
    else:
        resolve_checkpoint(source)
    try:  # a port in use or a host that is not ours: one line, before the model is loaded
        with socket.create_server((host, port)):
            pass
    except OSError as e:
        raise UserError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e})") from None
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
    if workers > 1:  # each process loads the model itself; metrics are per process
        # the workers load what the parent found (an ONNX export made at start is not made again)
        os.environ["ALEXNET_SERVE"] = json.dumps(
            {
                "source": str(clf.path) if backend == "onnxruntime" else source,
                "onnx": backend == "onnxruntime",
                "device": device,
                "options": dataclasses.asdict(opts),
                "header_timeout": header_timeout,
                "max_connections": TimedH11Protocol.max_connections,
            }
        )
        uvicorn.run(
            "alexnet.server.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            **limits,
        )
    else:
        uvicorn.run(
            create_app(clf, opts, backend=backend, source=source), host=host, port=port, log_level=log_level, **limits
        )


# SIGTERM: requests in flight get this long, then the server stops (a stalled upload cannot hold it);
# an idle kept-alive connection is closed after this long. backlog: asyncio accepts up to this many
# connections in one go before any of them reaches the protocol that caps them, and an evicted one's
# descriptor is closed a loop iteration or two later: uvicorn's 2,048 let a burst of idle connections
# take every descriptor above the cap (64: one EMFILE per run of the 1,000-connection test); 32 keeps
# three bursts within connection_limit's margin of 128 descriptors
UVICORN_LIMITS = {"timeout_graceful_shutdown": 5, "timeout_keep_alive": 5, "backlog": 32}


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


class TimedH11Protocol(H11Protocol):  # type: ignore[misc,valid-type]
    """uvicorn's HTTP/1.1 protocol with a clock on the request line and headers: a connection that
    sends nothing, or a request's headers only in part, for ``header_timeout`` seconds gets a JSON 408
    and is closed (uvicorn itself waits for ever, and 1,100 such connections took a server's every
    descriptor). A class attribute, set in each server process (``serve``, ``app_from_env``)."""

    header_timeout = 10.0
    max_connections: int | None = None  # open connections per process; see connection_made
    _open: "OrderedDict[TimedH11Protocol, None]" = OrderedDict()  # this process's, oldest first
    _header_timer: Any = None

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if self._between_requests() and not self.transport.is_closing():
            body = json.dumps(
                {
                    "error": f"request headers not received within {self.header_timeout:g} s (--header-timeout)",
                    "status": 408,
                }
            ).encode()
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
            )
            self.transport.close()

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        open_ = TimedH11Protocol._open
        open_[self] = None
        if self.max_connections is not None and len(open_) > self.max_connections:
            # At the cap, the oldest connection with no request running makes room (it sent nothing
            # yet, or waits between requests): 1,000 idle connections cannot lock out a client that
            # has a request to make, and the descriptors in use stay below the file limit, so the
            # accept loop never fails. With every connection busy, the new one is refused.
            idle = next((c for c in open_ if c is not self and c._between_requests()), None)
            victim = idle or self
            victim._refuse(
                "the server is at its connection limit (--max-connections)"
                + (": this idle connection made room for a new one" if idle else "")
            )
            if victim is self:
                return
        self._arm()

    def _refuse(self, why: str) -> None:
        TimedH11Protocol._open.pop(self, None)
        self._disarm()
        if not self.transport.is_closing():
            body = json.dumps({"error": why, "status": 503}).encode()
            self.transport.write(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
            )
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._between_requests():
            self._arm()  # bytes of a request line or headers: the clock runs until they are whole
        else:
            self._disarm()  # a request runs; its body has --body-timeout

    def connection_lost(self, exc: Exception | None) -> None:
        TimedH11Protocol._open.pop(self, None)
        self._disarm()
        super().connection_lost(exc)


class AcceptErrors:
    """The event loop's handler for errors outside any request, installed at start-up: failures of
    ``accept`` (out of descriptors or memory: asyncio retries each second and logs a traceback each
    time, ~8 MB/s under a flood) become one line per ``every`` seconds with how many there were;
    anything else goes to asyncio's own handler."""

    def __init__(self, every: float = 10.0, write: Callable[[str], None] | None = None) -> None:
        self.every, self.count, self.last = every, 0, -math.inf
        self.write = write or (lambda line: print(line, file=sys.stderr, flush=True))

    def __call__(self, loop: Any, context: dict) -> None:
        exc = context.get("exception")
        if "accept" not in context.get("message", "") and not (
            isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
        ):
            loop.default_exception_handler(context)
            return
        self.count += 1
        now = time.monotonic()
        if now - self.last >= self.every:
            self.write(
                f"alexnet serve: accepting connections failed {self.count} time(s) since the last report "
                f"({exc or context.get('message')}); new connections wait (see --max-connections)"
            )
            self.count, self.last = 0, now


def check_finite(clf: Any, source: str) -> None:
    """A model with NaN or infinite weights would answer every request with a 500 (NaN is not JSON):
    refused at start-up instead, naming the first such tensor."""
    model = getattr(clf, "model", None)
    if model is None:  # ONNX Runtime: its weights were checked against torch's when it was exported
        return
    bad = nonfinite_tensors(model.state_dict())
    if bad:
        raise UserError(f"{source}: its weights hold NaN or infinite values ({bad[0]}); not served")
