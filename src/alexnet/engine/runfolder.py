"""The run folder: what a training run writes and what ``--resume`` reads back.

    RUN/config.toml        the resolved config (``--recipe RUN/config.toml`` reruns it)
    RUN/environment.json   package version, git commit, torch, device, process count
    RUN/metrics.csv        one row per epoch (``METRIC_FIELDS``)
    RUN/curves.png         loss and top-1 error per epoch
    RUN/tensorboard/       the same figures as TensorBoard events
    RUN/last.pt            every epoch (and every ``checkpoint_every`` steps), with the optimizer
    RUN/best.pt            the epoch with the lowest centre-crop validation error

Only the main process (rank 0) writes; every write is atomic.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import math
import os
import shutil
import socket
from pathlib import Path
from typing import Any

from ..checkpoint import CheckpointRecord, load_checkpoint, save_checkpoint
from ..config import dump_toml
from ..errors import UserError
from ..files import atomic_savefig, atomic_write_text

METRIC_FIELDS = [
    "epoch",
    "lr",
    "train_loss",
    "train_top1_error",
    "val_loss",
    "val_top1_error",
    "val_top5_error",
    "val10_top1_error",
    "val10_top5_error",
    "val_images",
    "test_top1_error",
    "test_top5_error",
    "test_images",
    "train_seconds",
    "epoch_seconds",
    "elapsed_seconds",
    "images_per_sec",
    "grad_norm",  # with clip_grad_norm: the epoch's last optimizer step's gradient norm before clipping
    "ema_val_loss",  # with model_ema: the averaged weights on the validation split
    "ema_val_top1_error",
    "ema_val_top5_error",
    "ema_test_top1_error",  # and on the test split (val_split), once, at the end
    "ema_test_top5_error",
]


def write_metrics(path: Path, rows: list[dict[str, float]]) -> None:
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=METRIC_FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(path, text.getvalue())


def plot_curves(path: Path, rows: list[dict[str, float]], title: str) -> None:
    """Loss and top-1 error per epoch, train and validation (and the EMA's), side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ep = [r["epoch"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(ep, [r["train_loss"] for r in rows], "o-", label="train")
    a.plot(ep, [r["val_loss"] for r in rows], "s-", label="validation")
    a.set_xlabel("epoch"), a.set_ylabel("cross-entropy loss"), a.legend(), a.grid(alpha=0.3)
    b.plot(ep, [100 * r["train_top1_error"] for r in rows], "o-", label="train top-1")
    b.plot(ep, [100 * r["val_top1_error"] for r in rows], "s-", label="validation top-1 (centre crop)")
    b.plot(ep, [100 * r["val_top5_error"] for r in rows], "^--", label="validation top-5")
    ten = [
        (r["epoch"], 100 * r["val10_top1_error"]) for r in rows if not math.isnan(r.get("val10_top1_error", math.nan))
    ]
    if ten:
        b.plot(*zip(*ten), "*", markersize=12, label="validation top-1, ten patches")
    ema = [
        (r["epoch"], r["ema_val_loss"], 100 * r["ema_val_top1_error"])
        for r in rows
        if not math.isnan(r.get("ema_val_top1_error", math.nan))
    ]
    if ema:  # --model-ema: the average of the weights, evaluated beside them
        a.plot([e for e, _, _ in ema], [v for _, v, _ in ema], "d:", label="validation, EMA weights")
        a.legend()
        b.plot([e for e, _, _ in ema], [v for _, _, v in ema], "d:", label="validation top-1, EMA weights")
    b.set_xlabel("epoch"), b.set_ylabel("error (%)"), b.legend(), b.grid(alpha=0.3)
    for ax in (a, b):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    atomic_savefig(fig, path, 110)
    plt.close(fig)


LOCK = ".lock"  # RUN/.lock: held (flock) by the one process that trains into RUN


class RunFolder:
    """The files of one run. ``main``: this process writes (rank 0 of a torchrun job)."""

    def __init__(self, out: str | os.PathLike[str], *, main: bool = True) -> None:
        self.out, self.main = Path(out), main
        self.writer: Any = None
        self._lock_fd: int | None = None
        self._created = False

    def lock(self) -> str | None:
        """Take the run folder for this process, for its whole life: a second ``train`` into the same
        ``--out`` (or a second ``--resume`` of it) is refused in one line before any work. The lock is
        the kernel's (``flock``): it goes with the process, however it ends, so a lock file left by a
        process that died is taken over (returned as a note to print). Only the main process locks."""
        if not self.main:
            return None
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"--out {self.out}: exists and is not a folder")
        try:
            self._created = not self.out.exists()
            self.out.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(f"--out {self.out}: cannot write there ({e.strerror or e})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(
                f"--out {self.out}: in use by {holder}, which is training into it; wait for it "
                "to end or choose another folder"
            ) from None
        before = os.pread(fd, 200, 0).decode(errors="replace").strip()
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"alexnet process {os.getpid()} on {socket.gethostname()}".encode(), 0)
        self._lock_fd = fd
        return f"{self.out}: took over the lock left by {before}, which is no longer running" if before else None

    def check(self, resume: bool) -> None:
        """A new run needs a new or empty folder (a folder holding a run's files, or anything else,
        is never overwritten); ``--resume`` needs the run's ``last.pt``. Stale temporary files of
        interrupted writes are removed (resume only: a new run's folder is empty)."""
        out = self.out
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out}: exists and is not a folder")
        if resume:
            if not (out / "last.pt").is_file():
                if self.never_checkpointed():
                    return  # stopped before its first checkpoint: train() starts it again
                raise UserError(f"--resume: {out}/last.pt does not exist (nothing to resume)")
            if self.main:
                self.remove_stale_temporaries()
            return
        if out.is_dir():
            try:
                entries = sorted(e.name for e in os.scandir(out) if e.name != LOCK)
            except OSError as e:
                raise UserError(f"--out {out}: cannot be read ({e.strerror})") from None
            if entries:
                run_files = [e for e in entries if e in ("last.pt", "best.pt", "metrics.csv", "config.toml")]
                what = (
                    f"a run's files ({', '.join(run_files)})"
                    if run_files
                    else f"{len(entries)} other file(s) ({', '.join(entries[:3])}{', ...' if len(entries) > 3 else ''})"
                )
                hint = "pass --resume to continue it" if "last.pt" in run_files else "choose a new or empty folder"
                raise UserError(f"--out {out}: already holds {what}; {hint} (nothing is ever overwritten)")

    def never_checkpointed(self) -> bool:
        """A run stopped before its first checkpoint (killed while starting): no checkpoint and no
        metrics, at most its config, environment, TensorBoard folder and temporaries."""
        out = self.out
        if not out.exists():
            return True
        allowed = {"config.toml", "environment.json", "tensorboard", LOCK}
        return all(e.name in allowed or e.name.endswith(".tmp") for e in os.scandir(out))

    def remove_stale_temporaries(self) -> list[Path]:
        """The temporaries a killed atomic write leaves (``.last.pt.*.tmp``, ``metrics.csv.tmp``)."""
        gone = []
        for pattern in (".last.pt.*.tmp", ".best.pt.*.tmp", "metrics.csv.tmp", ".*.tmp"):
            for p in self.out.glob(pattern):
                try:
                    p.unlink()
                    gone.append(p)
                except OSError:
                    pass
        return gone

    def _write_error(self, path: Path, e: OSError) -> UserError:
        try:
            free = shutil.disk_usage(path.parent if path.parent.exists() else self.out).free
            space = f"; {free / 2**20:,.0f} MB free there"
        except OSError:
            space = ""
        why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or type(e).__name__)
        return UserError(
            f"cannot write {path}: {why}{space}; the files written before are intact "
            f"(continue with --resume once there is room)"
            if e.errno == errno.ENOSPC
            else f"cannot write {path}: {why}{space}"
        )

    def start(self, resolved: dict[str, Any], env: dict[str, str]) -> None:
        """Write config.toml and environment.json and open the TensorBoard writer."""
        if not self.main:
            return
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(
                self.out / "config.toml",
                f"# resolved config of this run; rerun with: alexnet train --recipe {self.out / 'config.toml'} "
                "--out NEW_RUN\n" + dump_toml(resolved),
            )
            atomic_write_text(self.out / "environment.json", json.dumps(env, indent=1) + "\n")
        except OSError as e:
            raise UserError(f"--out {self.out}: cannot write there ({e.strerror or e})") from None
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.out / "tensorboard"))

    def resume_checkpoint(self) -> dict[str, Any]:
        return load_checkpoint(self.out / "last.pt")

    def save(self, checkpoint: CheckpointRecord | dict[str, Any], name: str) -> None:
        """Write a checkpoint atomically; a full disk ends the run with one line, the old file intact."""
        if self.main:
            try:
                save_checkpoint(checkpoint, self.out / name)
            except OSError as e:
                raise self._write_error(self.out / name, e) from None

    def log_scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is None:
            return
        for key, v in values.items():
            if not math.isnan(v):
                self.writer.add_scalar(key, v, step)
        self.writer.flush()

    def end_epoch(self, rows: list[dict[str, float]], title: str) -> None:
        """TensorBoard scalars of the epoch just added, metrics.csv and curves.png."""
        if not self.main:
            return
        row = rows[-1]
        self.log_scalars(
            {
                (k.replace("_", "/", 1) if k.startswith(("train", "val", "test")) else k): row[k]
                for k in (
                    "train_loss",
                    "train_top1_error",
                    "val_loss",
                    "val_top1_error",
                    "val_top5_error",
                    "val10_top1_error",
                    "val10_top5_error",
                    "test_top1_error",
                    "test_top5_error",
                    "lr",
                    "images_per_sec",
                )
                if k in row
            },
            int(row["epoch"]),
        )
        try:
            write_metrics(self.out / "metrics.csv", rows)
            plot_curves(self.out / "curves.png", rows, title)
        except OSError as e:
            raise self._write_error(self.out / "metrics.csv", e) from None

    def close_writer(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def close(self) -> None:
        """Close the TensorBoard writer and release the lock; a folder this process created and left
        empty (a run refused before its first file) is removed."""
        self.close_writer()
        if self._lock_fd is not None:
            if self._created and {e.name for e in os.scandir(self.out)} <= {LOCK}:
                shutil.rmtree(self.out, ignore_errors=True)
            os.ftruncate(self._lock_fd, 0)  # a clean end: no holder to report to the next process
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
