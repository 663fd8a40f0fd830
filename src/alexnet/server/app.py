"""``alexnet serve``'s application: a trained classifier behind a URL, a web page and a JSON API
(the routes: ``routes``), wrapped in the body guard (``transport.Guard``).

Images that arrive together are classified in one batch (``batching``). Every limit answers with a
JSON body ``{"error": ..., "status": ...}`` (and ``"filename"`` where one file is to blame), and the
server keeps serving: a body over ``--max-bytes`` -> 413, more than ``--max-files`` files -> 422, not
an image -> 415, a truncated or corrupt image or a decompression bomb -> 400, a malformed request (no
file, a bad ``top_k``, a broken multipart body) -> 422.

The server's modules, by concern: ``options`` (limits, checks), ``metrics`` (prometheus_client),
``batching`` (the batcher and the pixel budget), ``uploads`` (reading and decoding a request's images),
``errors`` (the errors and the schema), ``routes`` (the handlers), this module (the app),
``transport`` (the body guard and uvicorn's protocol) and ``run`` (loading the model, ``serve``).
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from ..version import __version__
from .batching import Batcher, PixelBudget
from .errors import install_handlers
from .metrics import Metrics
from .options import PAGE, ServeOptions
from .routes import ServerState, model_description, register
from .transport import AcceptErrors, Guard


def create_app(clf: Any, options: ServeOptions | None = None, *, backend: str = "torch", source: str = "") -> Any:
    """The ASGI application serving ``clf`` (a ``Classifier`` or an ``OnnxClassifier``)."""
    opts = options or ServeOptions()
    state = ServerState(
        clf,
        opts,
        Metrics(),
        PixelBudget(opts.max_pixels_in_flight, opts.pixel_wait),
        model_description(clf, backend, source),
        PAGE.read_text(encoding="utf-8"),
    )

    @asynccontextmanager
    async def lifespan(app: Any):  # type: ignore[no-untyped-def]
        state.batcher = Batcher(clf, opts.max_batch, opts.batch_window_ms / 1000, state.metrics)
        state.batcher.start()
        asyncio.get_running_loop().set_exception_handler(AcceptErrors())  # one line per 10 s, not a flood
        yield
        await state.batcher.stop()

    app = FastAPI(title="alexnet serve", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.server = state
    install_handlers(app, opts.body_timeout, opts.max_bytes)
    register(app, opts)
    return Guard(app, opts.max_bytes, state.metrics, opts.body_timeout)
