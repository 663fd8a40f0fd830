"""Helpers for tests and benchmarks: generated data, untrained runs, and ``alexnet serve`` in a child
process with the clients that exercise it. Nothing in the package's commands imports this module.

    run = save_untrained_run(tmp / "run", "cifar_18pct")        # a run folder whose weights do not matter
    packed = synthetic_packed(tmp / "packed", 2048, val=256)     # what ``alexnet prepare`` would write
    with ServerProcess(str(run)) as server:
        load_test(server.url, images, clients=16, seconds=5)
"""

from __future__ import annotations

import http.client
import io
import json
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

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .checkpoint import CheckpointRecord, save_checkpoint
from .data.packed.format import FORMAT, VERSION, SplitFiles
from .data.packed.writer import _statistics, _write_meta
from .data.transforms import EvalTransform
from .models import create_model, model_info
from .server.app import DEFAULT_MAX_BYTES

# ------------------------------------------------------------------------------------------ generated data


def save_untrained_run(
    folder: str | os.PathLike[str],
    model_name: str,
    *,
    num_classes: int | None = None,
    classes: list[str] | None = None,
    metrics: dict[str, Any] | None = None,
    seed: int = 0,
) -> Path:
    """A run folder (``best.pt``) holding ``model_name`` as initialised (seeded), with the model's
    own input geometry and a plain mean/std transform: what benchmarks of speed and tests of the
    serving and export paths need when the weights do not matter."""
    info = model_info(model_name)
    n = num_classes or (len(classes) if classes else info.num_classes)
    torch.manual_seed(seed)
    pad = 2 if model_name == "lenet5" else 0  # LeNet-5 takes 28x28 digits padded to 32
    crop = info.input_size - 2 * pad
    transform = EvalTransform(
        max(info.image_size, crop), crop, pad, info.in_chans, (120.0,) * info.in_chans, (60.0,) * info.in_chans
    )
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        CheckpointRecord(
            model=create_model(model_name, num_classes=n).state_dict(),
            model_name=model_name,
            num_classes=n,
            classes=classes or [str(i) for i in range(n)],
            eval_transform=transform.to_dict(),
            metrics=metrics or {},
        ),
        out / "best.pt",
    )
    return out


def synthetic_packed(
    dst: str | os.PathLike[str], n: int, *, size: int = 256, classes: int = 100, val: int = 0, seed: int = 0
) -> Path:
    """A packed dataset of ``n`` generated images (smooth random colour fields, so that crops differ)
    with labels, statistics and the format ``alexnet prepare`` writes: throughput measurements
    without a dataset at hand (``benchmarks/gpu.sh``)."""
    root = Path(dst)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [f"class{i:03d}" for i in range(classes)]
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "complete": False,
        "source": "generated",
        "image_size": size,
        "channels": 3,
        "layout": "NHWC",
        "dtype": "uint8",
        "classes": names,
        "class_names": names,
        "splits": {},
    }
    base = torch.nn.functional.interpolate(
        torch.rand(64, 3, 8, 8), size=(size, size), mode="bilinear", align_corners=False
    )
    base = (base * 127).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # 64 smooth templates, NHWC
    noise = rng.integers(0, 32, (16, size, size, 3), dtype=np.uint8)  # reused: generating it is the slow part
    for split, count in (("train", n), ("val", val)):
        if count <= 0:
            continue
        files = SplitFiles.open(root, split, count, size, 3, "w+")
        for k in range(0, count, 64):
            m = min(64, count - k)
            files.images[k : k + m] = (
                base[rng.integers(0, len(base), m)]
                + noise[rng.integers(0, len(noise), m)]
                + rng.integers(0, 96, (m, 1, 1, 3), dtype=np.uint8)
            )
        files.labels[:] = rng.integers(0, classes, count)
        files.status[:] = 1
        files.flush()
        (root / f"{split}_files.json").write_text(
            json.dumps([[f"generated/{i}", int(y)] for i, y in enumerate(files.labels.tolist())])
        )
        meta["splits"][split] = {"count": count, "skipped": []}
    # the statistics of the first 1,000 images (all of them would take minutes for 20,000)
    sample = {**meta, "splits": {"train": {"count": min(n, 1000)}}}
    meta["stats"] = _statistics(root, sample, lambda **kw: tqdm(disable=True, **kw))
    meta["complete"] = True
    _write_meta(root, meta)
    return root


def synthetic_jpegs(dst: str | os.PathLike[str], n: int, *, classes: int = 10, seed: int = 0) -> Path:
    """``n`` photo-sized (500x375) generated JPEGs in ``dst/train/CLASS/``, quality 90, for the
    torchvision reference pipeline (its cost is decoding and resizing, which depend on the size)."""
    rng = np.random.default_rng(seed)
    root = Path(dst)
    templates = torch.nn.functional.interpolate(
        torch.rand(16, 3, 6, 8), size=(375, 500), mode="bilinear", align_corners=False
    )
    templates = (templates * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i in range(n):
        d = root / "train" / f"class{i % classes:03d}"
        d.mkdir(parents=True, exist_ok=True)
        img = templates[rng.integers(0, 16)] // 2 + rng.integers(0, 64, (375, 500, 3), dtype=np.uint8)
        Image.fromarray(img).save(d / f"{i:06d}.jpg", quality=90)
    return root


# ------------------------------------------------------------------------------------------ the server


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
        ("too many files", [(f"{i}.jpg", good) for i in range(max_files + 1)], 413),
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
