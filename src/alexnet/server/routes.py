"""The routes of ``alexnet serve``, module-level handlers that find the server's state on the app
(``request.app.state.server``), and the table ``create_app`` registers them from.

    GET  /              a page: drop or choose images, see the top-5 classes as bars
    POST /v1/classify   multipart (one or more ``file`` fields) or a raw image body; ?top_k=5
    GET  /v1/model      name, options, classes, eval transform, metrics, version
    GET  /healthz       {"status": "ok"}
    GET  /metrics       request counts and latency histograms, Prometheus text format
"""
# no ``from __future__ import annotations`` in this module: FastAPI reads the handlers' annotations

import time
from dataclasses import dataclass
from typing import Any

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ..version import __version__
from .batching import Batcher, PixelBudget
from .errors import ERROR_RESPONSES, ApiError, api_schemas, classify_body
from .metrics import CONTENT_TYPE, Metrics
from .options import ServeOptions
from .uploads import decode_all, read_files


@dataclass
class ServerState:
    """What the handlers share: the classifier, the limits, the metrics, the decoding budget, the
    batcher (made when the app starts), the model's description and the page."""

    clf: Any
    opts: ServeOptions
    metrics: Metrics
    budget: PixelBudget
    info: dict[str, Any]
    page: str
    batcher: Batcher | None = None


def _state(request: Request) -> ServerState:
    return request.app.state.server


async def index(request: Request) -> HTMLResponse:
    return HTMLResponse(_state(request).page)


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def model(request: Request) -> dict[str, Any]:
    return _state(request).info


async def prometheus(request: Request) -> Response:
    return Response(_state(request).metrics.text(), media_type=CONTENT_TYPE)


async def classify(
    request: Request,
    top_k: int | None = Query(None, ge=1, description="classes per image (default: the server's --top-k)"),
    filename: str = Query("image", description="the name a raw image body is reported under"),
) -> JSONResponse:
    t0 = time.perf_counter()
    s = _state(request)
    k = s.opts.top_k if top_k is None else top_k
    if k < 1:
        raise ApiError(422, f"malformed request: top_k must be at least 1, not {k}")
    files = await read_files(request, s.opts, filename)
    images = await decode_all(files, s.clf, s.opts, s.budget, s.metrics)
    assert s.batcher is not None
    preds = await s.batcher.classify(images, k)
    ms = round((time.perf_counter() - t0) * 1000, 2)
    results = [
        {
            "filename": name,
            "top": [
                {"label": lab, "index": i, "prob": p} for lab, i, p in zip(pr.labels[:k], pr.indices[:k], pr.probs[:k])
            ],
            "ms": ms,
        }
        for (name, _), pr in zip(files, preds)
    ]
    return JSONResponse({"model": s.clf.name, "results": results})


def register(app: Any, opts: ServeOptions) -> None:
    """The routes on ``app``, with their OpenAPI descriptions (the request body's limits are the app's)."""
    schemas = api_schemas()
    errors = {code: {"model": schemas["Error"], "description": why} for code, why in ERROR_RESPONSES.items()}
    page = {200: {"content": {"text/html": {}}, "description": "the page"}}
    text = {
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format 0.0.4"}
    }
    app.add_api_route("/", index, methods=["GET", "HEAD"], response_class=HTMLResponse, responses=page)
    app.add_api_route("/healthz", healthz, methods=["GET"], response_model=schemas["Health"])
    app.add_api_route("/v1/model", model, methods=["GET"], response_model=schemas["ModelInfo"])
    app.add_api_route("/metrics", prometheus, methods=["GET"], response_class=Response, responses=text)
    app.add_api_route(
        "/v1/classify",
        classify,
        methods=["POST"],
        response_model=schemas["Classification"],
        responses=errors,
        openapi_extra={"requestBody": classify_body(opts.max_files, opts.max_bytes)},
    )


def model_description(clf: Any, backend: str, source: str) -> dict[str, Any]:
    """``GET /v1/model``: the network, its classes, its evaluation transform and training metrics."""
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
