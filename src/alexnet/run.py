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
import json
import math
import os
import platform
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .checkpoint import load_checkpoint, save_checkpoint
from .config import dump_toml
from .errors import UserError

METRIC_FIELDS = [
    "epoch", "lr", "train_loss", "train_top1_error", "val_loss", "val_top1_error", "val_top5_error",
    "val10_top1_error", "val10_top5_error", "val_images", "train_seconds", "epoch_seconds", "elapsed_seconds",
    "images_per_sec",
]


def environment() -> dict[str, str]:
    import subprocess

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "alexnet": __version__,
        "git_commit": commit or "unknown",
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "machine": platform.platform(),
    }


def write_metrics(path: Path, rows: list[dict[str, float]]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRIC_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    os.replace(tmp, path)


def plot_curves(path: Path, rows: list[dict[str, float]], title: str) -> None:
    """Loss and top-1 error per epoch, train and validation, side by side."""
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
    ten = [(r["epoch"], 100 * r["val10_top1_error"]) for r in rows if not math.isnan(r.get("val10_top1_error", math.nan))]
    if ten:
        b.plot(*zip(*ten), "*", markersize=12, label="validation top-1, ten patches")
    b.set_xlabel("epoch"), b.set_ylabel("error (%)"), b.legend(), b.grid(alpha=0.3)
    for ax in (a, b):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


class RunFolder:
    """The files of one run. ``main``: this process writes (rank 0 of a torchrun job)."""

    def __init__(self, out: str | os.PathLike[str], *, main: bool = True) -> None:
        self.out, self.main = Path(out), main
        self.writer: Any = None

    def check(self, resume: bool) -> None:
        """A new run needs a folder without a run in it; ``--resume`` needs its ``last.pt``."""
        if (self.out / "last.pt").exists() and not resume:
            raise UserError(f"--out {self.out}: already holds a run (last.pt); pass --resume to continue it "
                            "or choose another folder")
        if resume and not (self.out / "last.pt").exists():
            raise UserError(f"--resume: {self.out}/last.pt does not exist")

    def start(self, resolved: dict[str, Any], env: dict[str, str]) -> None:
        """Write config.toml and environment.json and open the TensorBoard writer."""
        if not self.main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.toml").write_text(
            f"# resolved config of this run; rerun with: alexnet train --recipe {self.out / 'config.toml'} --out NEW_RUN\n"
            + dump_toml(resolved)
        )
        (self.out / "environment.json").write_text(json.dumps(env, indent=1) + "\n")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.out / "tensorboard"))

    def resume_checkpoint(self) -> dict[str, Any]:
        return load_checkpoint(self.out / "last.pt")

    def save(self, checkpoint: dict[str, Any], name: str) -> None:
        if self.main:
            save_checkpoint(checkpoint, self.out / name)

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
        self.log_scalars({(k.replace("_", "/", 1) if k.startswith(("train", "val")) else k): row[k]
                          for k in ("train_loss", "train_top1_error", "val_loss", "val_top1_error", "val_top5_error",
                                    "val10_top1_error", "val10_top5_error", "lr", "images_per_sec")
                          if k in row}, int(row["epoch"]))
        write_metrics(self.out / "metrics.csv", rows)
        plot_curves(self.out / "curves.png", rows, title)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
