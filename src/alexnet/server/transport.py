"""The transport under the app: ``Guard``, the ASGI middleware that counts and times every request and
refuses oversized or stalled bodies without keeping them; ``TimedH11Protocol``, uvicorn's HTTP/1.1
protocol with a clock on the request line and headers and a cap on open connections; and
``AcceptErrors``, the event loop's handler for failures of ``accept``.

``TimedH11Protocol`` subclasses uvicorn's ``H11Protocol``, which is not public API: it is known to
work with the uvicorn range ``pyproject.toml`` pins, and ``check_uvicorn`` refuses, in one line, a
uvicorn whose protocol no longer has what it uses.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import json
import math
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..errors import UserError
from ..runtime import trim_freed_memory
from .errors import BodyStalled, BodyTooLarge, too_large
from .metrics import Metrics

# what TimedH11Protocol uses of uvicorn's private H11Protocol (checked at start-up: check_uvicorn)
H11_METHODS = ("connection_made", "data_received", "connection_lost")
H11_ATTRIBUTES = ("self.cycle", "self.transport", "self.loop", "response_complete")
UVICORN_RANGE = ">=0.29,<0.56"  # as pyproject.toml pins it: the versions the protocol class is known to work with


def check_uvicorn(protocol: type = H11Protocol, version: str | None = None) -> None:
    """Refuse, in one line, to serve on a uvicorn whose private HTTP/1.1 protocol lost a method or an
    attribute TimedH11Protocol uses (its source names them; a class without source is taken on trust)."""
    try:
        source = inspect.getsource(protocol)
    except (OSError, TypeError):
        source = " ".join(H11_ATTRIBUTES)
    missing = [m for m in H11_METHODS if not callable(getattr(protocol, m, None))]
    missing += [a.removeprefix("self.") for a in H11_ATTRIBUTES if a not in source]
    if missing:
        raise UserError(
            f"uvicorn {version or uvicorn.__version__}: its HTTP/1.1 protocol (uvicorn.protocols.http.h11_impl."
            f"H11Protocol) has no {', '.join(missing)}; alexnet serve works with uvicorn{UVICORN_RANGE} "
            f"(pip install 'uvicorn{UVICORN_RANGE}')"
        )


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
    bytes received pass the limit: the app's handler for ``BodyTooLarge`` answers then). The rest of a
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
        message = too_large(self.max_bytes).encode()
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
                raise BodyStalled from None
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                counted[0] = received
                if received > self.max_bytes:
                    if msg.get("more_body"):
                        await self._drain(receive, self.drain_limit - received)
                    raise BodyTooLarge
            return msg

        async def tracking_send(msg: dict) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started, status[0] = True, int(msg["status"])
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:  # raised where no handler of the app saw it
            if not started:
                status[0] = 413
                await self._reply_413(send, message)
        except BodyStalled:
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


class TimedH11Protocol(H11Protocol):  # type: ignore[misc,valid-type]
    """uvicorn's HTTP/1.1 protocol with a clock on the request line and headers: a connection that
    sends nothing, or a request's headers only in part, for ``header_timeout`` seconds gets a JSON 408
    and is closed (uvicorn itself waits for ever, and 1,100 such connections took a server's every
    descriptor). A class attribute, set in each server process (``serve``, ``app_from_env``)."""

    header_timeout = 10.0
    max_connections: int | None = None  # open connections per process; see connection_made
    _open: OrderedDict[TimedH11Protocol, None] = OrderedDict()  # this process's, oldest first
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
