"""``alexnet serve`` in a child process, and the clients that exercise it (multipart bodies, hostile
uploads, a load test), for tests and ``benchmarks/serve_load.py``.

    with ServerProcess(str(run)) as server:
        load_test(server.url, images, clients=16, seconds=5)
"""

from __future__ import annotations

import http.client
import io
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from PIL import Image

from alexnet.server.options import DEFAULT_MAX_BYTES


class ServerProcess:
    """``alexnet serve ARGS...`` in a child process on a free loopback port, until the ``with`` ends
    (the tests and benchmarks/serve_load.py use it)."""

    def __init__(
        self, *args: str, startup_s: float = 120.0, env: dict[str, str] | None = None, nofile: int | None = None
    ) -> None:
        self.args, self.startup_s, self.env, self.nofile = list(args), startup_s, env, nofile
        self.proc: Any = None
        self.url = ""
        self.log = ""

    def __enter__(self) -> ServerProcess:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self._log = tempfile.NamedTemporaryFile("w+", prefix="alexnet-serve-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "alexnet", "serve", *self.args, "--port", str(port), "--log-level", "warning"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(self.env or {})},
            preexec_fn=self._limit_files,
        )
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"alexnet serve exited with {self.proc.returncode}: {self.read_log()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError(f"alexnet serve did not answer within {self.startup_s:.0f} s: {self.read_log()[-2000:]}")

    def _limit_files(self) -> None:
        """In the child: its open-file limit, soft and hard, lowered to ``nofile`` (it cannot raise it)."""
        if self.nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def read_log(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except Exception:
                self.proc.kill()
        self.log = self.read_log()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)


def multipart_body(files: list[tuple[str, bytes]], field: str = "file") -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data request with ``files``."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, data in files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def hostile_payloads(good: bytes, max_bytes: int, max_files: int) -> list[tuple[str, bytes, str, int]]:
    """(kind, body, content type, expected status) of uploads a server must refuse and survive."""
    bomb = io.BytesIO()
    Image.new("1", (12000, 12000)).save(bomb, "PNG")  # 144 megapixels in about 20 KB
    out = []
    for kind, files, status in (
        ("not an image", [("notes.jpg", b"this is not an image at all" * 20)], 415),
        ("truncated", [("cut.jpg", good[: len(good) // 3])], 400),
        ("decompression bomb", [("bomb.png", bomb.getvalue())], 400),
        ("too many files", [(f"{i}.jpg", good) for i in range(max_files + 1)], 422),  # the schema's maxItems
        ("over --max-bytes", [("big.jpg", good + b"\0" * (max_bytes + 1))], 413),
    ):
        body, ctype = multipart_body(files)
        out.append((kind, body, ctype, status))
    out.append(("malformed multipart", b"--nope\r\ngarbage", "multipart/form-data; boundary=xyz", 422))
    return out


def load_test(
    url: str,
    images: list[bytes],
    *,
    clients: int = 16,
    seconds: float = 10.0,
    hostile_fraction: float = 0.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_files: int = 32,
    seed: int = 0,
) -> dict[str, Any]:
    """``clients`` threads posting ``images`` (one per multipart request) to ``url``/v1/classify for
    ``seconds``, a ``hostile_fraction`` of the requests replaced by hostile uploads. Returns
    requests/s, p50/p99 latency of the good requests, and the failures: a good request not answered
    200, or a hostile one answered other than its 4xx (a 5xx, a dropped connection)."""
    u = urlsplit(url)
    hostile = hostile_payloads(images[0], max_bytes, max_files) if hostile_fraction > 0 else []
    good = [multipart_body([(f"{i}.jpg", im)]) for i, im in enumerate(images)]
    lock = threading.Lock()
    lat: list[float] = []
    counts = {"good": 0, "hostile": 0, "good_failures": 0, "hostile_failures": 0}
    failures: list[str] = []
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        while time.monotonic() < stop:
            bad = hostile and rng.random() < hostile_fraction
            if bad:
                kind, body, ctype, want = rng.choice(hostile)
            else:
                (body, ctype), kind, want = rng.choice(good), "good", 200
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/v1/classify", body=body, headers={"Content-Type": ctype})
                r = conn.getresponse()
                r.read()
                got = r.status
                if r.getheader("connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException) as e:
                got = f"{type(e).__name__}"
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
            dt = time.perf_counter() - t0
            with lock:
                counts["hostile" if bad else "good"] += 1
                if not bad:
                    lat.append(dt)
                if got != want:
                    counts["hostile_failures" if bad else "good_failures"] += 1
                    if len(failures) < 20:
                        failures.append(f"{kind}: wanted {want}, got {got}")
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")
    return {
        "clients": clients,
        "seconds": round(wall, 2),
        "hostile_fraction": hostile_fraction,
        "requests": counts["good"] + counts["hostile"],
        "good_requests": counts["good"],
        "hostile_requests": counts["hostile"],
        "requests_per_sec": (counts["good"] + counts["hostile"]) / wall,
        "good_per_sec": counts["good"] / wall,
        "p50_ms": 1000 * (statistics.median(lat) if lat else float("nan")),
        "p99_ms": 1000 * q(0.99),
        "errors": counts["good_failures"],
        "hostile_failures": counts["hostile_failures"],
        "failures": failures,
    }
