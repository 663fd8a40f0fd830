"""Images from concurrent requests classified together (``Batcher``), and the bound on the pixels
being decoded at once over all requests (``PixelBudget``)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .errors import ApiError
from .metrics import Metrics


class Batcher:
    """Classifies images queued by concurrent requests in batches of up to ``max_batch``: one task
    takes up to ``max_batch`` of them at a time (waiting at most ``window_s`` for more once the first
    has come) and runs the network on a worker thread, so the event loop keeps accepting and decoding
    while the model runs."""

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

    async def _next_batch(self) -> list[tuple[Any, int, asyncio.Future[Any]]]:
        loop = asyncio.get_running_loop()
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
        return [b for b in batch if not b[2].cancelled()]  # a client that went away

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
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
            self.metrics.batch(len(batch))
            for (_, _, fut), p in zip(batch, preds):
                if not fut.done():
                    fut.set_result(p)


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
