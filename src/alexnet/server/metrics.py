"""The server's counters and histograms, through ``prometheus_client``, for ``GET /metrics``.

With ``--workers N`` every worker process writes its samples to files in a folder the parent makes
(prometheus_client's multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``, set before the workers start),
and ``/metrics`` from any worker reports the sum over all of them: the counts of the whole server.
"""

from __future__ import annotations

import os
import time

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from .options import BATCH_BUCKETS, LATENCY_BUCKETS

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own variable (read when it is imported)
CONTENT_TYPE = "text/plain; version=0.0.4"
prometheus_client.disable_created_metrics()  # no *_created series beside every counter and histogram


class Metrics:
    """The metrics of one app (a registry of its own, so that several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "alexnet_requests", "HTTP requests by method, path and status.", ["method", "path", "status"], registry=r
        )
        self.latency = Histogram(
            "alexnet_request_duration_seconds",
            "Time from request to response, by path.",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "alexnet_batch_size", "Images per forward pass of the network.", buckets=BATCH_BUCKETS, registry=r
        )
        self.images = Counter("alexnet_images", "Images classified.", registry=r)
        self.image_errors = Counter(
            "alexnet_image_errors", "Uploads refused as not an image, corrupt or too large.", registry=r
        )
        started = Gauge(
            "alexnet_process_start_time_seconds",
            "Start of the server process (Unix time; with --workers, the earliest worker's).",
            registry=r,
            multiprocess_mode="min",
        )
        started.set(time.time())

    def record(self, method: str, path: str, status: int, seconds: float) -> None:
        self.requests.labels(method, path, str(status)).inc()
        self.latency.labels(path).observe(seconds)

    def batch(self, n: int) -> None:
        self.batch_size.observe(n)
        self.images.inc(n)

    def image_error(self) -> None:
        self.image_errors.inc()

    def text(self) -> bytes:
        """Prometheus' text format: this process's samples, or every worker's under --workers."""
        folder = os.environ.get(MULTIPROC_DIR)
        if folder:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=folder)
            return generate_latest(registry)
        return generate_latest(self.registry)
