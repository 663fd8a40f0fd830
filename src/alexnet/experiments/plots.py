"""The experiments' figures: per-epoch curves of each arm (mean over seeds, with the seeds' range)
and the final test errors as bars with their standard deviation."""

from __future__ import annotations

import math
import statistics
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..files import atomic_savefig
from .library import Run

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mean_curve(runs: Sequence[Run], key: str) -> tuple[list[int], list[float], list[float], list[float]]:
    """Epochs, mean, min and max of ``key`` over the runs (epochs that every run reached)."""
    n = min(len(r.metrics) for r in runs)
    ep, mean, lo, hi = [], [], [], []
    for i in range(n):
        vals = [100 * float(r.metrics[i][key]) for r in runs if not math.isnan(float(r.metrics[i][key]))]
        if not vals:
            continue
        ep.append(i + 1)
        mean.append(statistics.fmean(vals))
        lo.append(min(vals))
        hi.append(max(vals))
    return ep, mean, lo, hi


def fit_title(fig, ax, title: str, fontsize: int = 10) -> None:
    """``ax``'s title, wrapped onto more lines where one line would be wider than the axes (it was cut
    off at the figure's edge); lays the figure out."""
    t = ax.set_title(title, fontsize=fontsize)
    fig.tight_layout()
    renderer = fig.canvas.get_renderer()
    width, room = t.get_window_extent(renderer).width, ax.get_window_extent(renderer).width
    if width > room:
        most = max(20, int(len(title) * room / width))  # characters that fit on a line
        lines = len(textwrap.wrap(title, most))
        even = math.ceil(len(title) / lines)  # the same number of lines, of about equal length
        while even < most and len(textwrap.wrap(title, even)) > lines:
            even += 1
        t.set_text(textwrap.fill(title, min(even, most)))
        fig.tight_layout()


def _finish(fig, ax, path: Path, title: str) -> str:
    """Grid, legend and title on a one-panel figure, then save it and return its file name."""
    ax.grid(alpha=0.3)
    ax.legend()
    fit_title(fig, ax, title)
    atomic_savefig(fig, path, 110)
    _pyplot().close(fig)
    return path.name


def plot_arms(
    path: Path,
    arms: Mapping[str, Sequence[Run]],
    title: str,
    *,
    final: dict[str, list[float]] | None = None,
    final_label: str = "test top-1 error (%)",
) -> str:
    """Left: validation (solid; the held-out split) and training (dashed) top-1 error per epoch for
    each arm. Right: each arm's final figure (``final``, default the last test error) as a bar with
    the seeds' std and points."""
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.6, 1]})
    for (arm, runs), colour in zip(arms.items(), COLOURS):
        for key, style, label in (("val_top1_error", "-", "validation"), ("train_top1_error", "--", "train")):
            ep, mean, lo, hi = _mean_curve(runs, key)
            if ep:
                a.plot(ep, mean, style, color=colour, label=f"{arm} ({label})")
                if len(runs) > 1:
                    a.fill_between(ep, lo, hi, color=colour, alpha=0.15, linewidth=0)
    a.set_xlabel("epoch")
    a.set_ylabel("top-1 error (%)")
    a.grid(alpha=0.3)
    a.legend(fontsize=8)
    seeds = max(len(r) for r in arms.values())
    panel_title = f"{title}: mean of {seeds} seed{'s' if seeds > 1 else ''}" + (" (band: range)" if seeds > 1 else "")
    final = final or {arm: [r.test_error for r in runs] for arm, runs in arms.items()}
    names = list(final)
    for i, (arm, colour) in enumerate(zip(names, COLOURS)):
        vals = [100 * v for v in final[arm] if not math.isnan(v)]
        if not vals:
            continue
        m = statistics.fmean(vals)
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        b.bar(i, m, yerr=sd, color=colour, alpha=0.75, capsize=4)
        b.plot([i] * len(vals), vals, "k.", markersize=5)
        b.annotate(f"{m:.2f}", (i, m + sd), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=8)
    b.set_xticks(range(len(names)), names, fontsize=8, rotation=15)
    b.set_ylabel(final_label)
    b.grid(axis="y", alpha=0.3)
    lows = [100 * min(v) for v in final.values() if v]
    if lows:
        b.set_ylim(bottom=max(0.0, 0.8 * min(lows)))
    fit_title(fig, a, panel_title)
    atomic_savefig(fig, path, 110)
    plt.close(fig)
    return path.name


def plot_training_error(
    path: Path, arms: Mapping[str, Sequence[Run]], target: float, title: str, styles: dict[str, str] | None = None
) -> str:
    """Figure 1 of the paper: training error rate against epochs, one line per run, with the target."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    styles = styles or {}
    for (arm, runs), colour in zip(arms.items(), ["black", "black", *COLOURS]):
        for j, r in enumerate(runs):
            ep = [int(m["epoch"]) for m in r.metrics]
            err = [float(m["train_top1_error"]) for m in r.metrics]  # the running error of each epoch
            ax.plot(
                ep,
                err,
                styles.get(arm, "-"),
                color=colour,
                linewidth=1.4,
                alpha=1.0 if j == 0 else 0.5,
                marker=".",
                label=arm if j == 0 else None,
            )
    ax.axhline(target, color="grey", linewidth=0.8, linestyle=":")
    ax.text(0.2, target + 0.01, f"{target:.0%} training error", color="grey", fontsize=8)
    ax.set_xlabel("epochs")
    ax.set_ylabel("training error rate")
    ax.set_ylim(0, 0.8)
    ax.set_xlim(left=0)
    return _finish(fig, ax, path, title)


def plot_lr_search(path: Path, search: dict[str, dict[float, float]], title: str) -> str:
    """Training error after the search runs against the learning rate, one line per arm."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for (arm, by_lr), style in zip(search.items(), ["o-", "s--", "^-."]):
        lrs = sorted(by_lr)
        ax.plot(lrs, [100 * by_lr[lr] for lr in lrs], style, color="black", label=arm)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training error after the search (%)")
    return _finish(fig, ax, path, title)
