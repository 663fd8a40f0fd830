"""Two columns (§3.2) and what each column learns (§6.1, Figure 3).

Claims: the two-GPU net has 1.7 pts lower top-1 error than a one-GPU net with half as many kernels
in each convolutional layer it splits (the footnote's pair: the layers the columns share keep their
size, so the two nets have about as many parameters); and the two columns specialise, "in every
run": one column's first-layer kernels largely colour-agnostic, the other's colour-specific.
Setting (protocol v2, "columns"): cifar_80sec with a 1024-unit hidden layer (its FC layers, like
AlexNet's, hold most parameters); one column of 32 kernels in conv1 and conv2 against two columns of
32 (conv2 grouped) that meet at conv3, conv3 and the FC layers the same in both; the fast recipe's
settings (20 epochs, 45,000 images, shifts and flips), the rate from the pilot. Specialisation: the
two-column nets' conv1, each kernel's colourfulness (the share of its energy, on 0-255 pixels, off
the grey direction), the columns' mean difference against random halves of the same 64 kernels.
Evidence: ``docs/paper/columns`` (2-core CPU); superseded: ``docs/paper/v1/columns``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...checkpoint import load_checkpoint
from ..context import Context
from ..library import Outcome, Row, Run, diff, experiment, merge_configs, pct, points, stats
from ..plots import plot_arms
from ..stats import sign_test
from ..verdicts import Precondition, Verdict, judge
from ._common import FAST, FITS, RATES, final_train_errors, fits

ONE, TWO = "one column (32 kernels)", "two columns (2 x 32 kernels)"
PERMUTATIONS = 2000  # random halves of the 64 kernels per seed, for the specialisation's null


def colourfulness(run: Run) -> np.ndarray:
    """Per conv1 kernel, the share of its squared norm off the grey direction (equal weights on R, G
    and B), the kernel taken on 0-255 pixels (divided by the input standardisation's per-channel std)."""
    ck = load_checkpoint(run.out / "last.pt")
    w = ck["model"]["features.conv1.weight"].double().numpy()  # (maps, 3, 5, 5)
    std = np.asarray(ck["eval_transform"]["std"], dtype=np.float64).reshape(1, -1, 1, 1)
    w = w / std
    grey = w.mean(1, keepdims=True)
    return ((w - grey) ** 2).sum((1, 2, 3)) / (w**2).sum((1, 2, 3))


def specialisation(c: np.ndarray, seed: int) -> dict[str, Any]:
    """The two columns' difference in mean colourfulness (kernels 0-31 against 32-63) and its
    permutation p-value against random halves of the same kernels."""
    half = len(c) // 2
    actual = abs(c[:half].mean() - c[half:].mean())
    rng = np.random.default_rng(seed)
    null = np.array(
        [abs(c[p[:half]].mean() - c[p[half:]].mean()) for p in (rng.permutation(len(c)) for _ in range(PERMUTATIONS))]
    )
    return {
        "difference": float(actual),
        "null_median": float(np.median(null)),
        "p": float((1 + (null >= actual).sum()) / (PERMUTATIONS + 1)),
        "column_means": [float(c[:half].mean()), float(c[half:].mean())],
    }


@experiment(
    "columns",
    title="Two columns against one (§3.2), and what each learns (§6.1)",
    section="§3.2, §6.1",
    claim="the two-GPU net (two columns that meet only at certain layers) has 1.7% / 1.2% lower top-1 / top-5 "
    "error than a one-GPU net with half as many kernels in each split layer; its columns specialise, one "
    "largely colour-agnostic, the other colour-specific, in every run",
    data="cifar10",
    seeds=6,
    epochs=20,
    train_images=None,
    minutes=150.0,
    pilot=(0.017, 0.0096, "the first version's 6 stable seeds (seeds 3 and 6 failed to train)"),
)
def columns(ctx: Context) -> Outcome:
    base = merge_configs(FAST, {"model": "cifar_80sec", "model_options": {"hidden": 1024, "width": 32}})
    arms = {ONE: {"model_options": {"columns": 1}}, TWO: {"model_options": {"columns": 2}}}
    lr = ctx.choose_rate(base, arms, RATES, fits())
    runs = ctx.paired(merge_configs(base, {"lr": lr}), arms)
    one, two = ([r.test_error for r in runs[a]] for a in (ONE, TWO))
    fit = {a: final_train_errors(rs) for a, rs in runs.items()}
    gain = diff(one, two)
    v = judge(
        gain,
        0.017,
        "the top-1 error drop from two columns",
        figure=points(gain),
        claimed="1.7 pts",
        preconditions=[
            Precondition(max(fit[a]) <= FITS, f"the {a} arm ended above {FITS:.0%} training error") for a in runs
        ],
    )
    spec = [specialisation(colourfulness(r), r.seed) for r in runs[TWO]]
    signs = [1 if s["difference"] > s["null_median"] else -1 for s in spec]
    st = sign_test(signs)
    st.update(what="columns differ in colourfulness more than random halves", ci=None)
    every = sum(s["p"] < 0.05 for s in spec)
    figure = f"{st['positive']} of {st['n']} seeds above the random halves' median; {every} with p < 0.05"
    status = "reproduced" if st["p"] < 0.05 else "not significant"
    v_spec = Verdict(
        "the columns specialise in colour (conv1)",
        status,
        figure,
        f"sign test over seeds, p = {st['p']:.3g}; per seed permutation p = "
        + ", ".join(f"{s['p']:.3g}" for s in spec),
        st,
        paper="in every run",
    )
    params = {a["name"]: a["parameters"] for a in ctx.reported_arms()}
    sec = {a: stats([r.seconds for r in rs])["mean"] for a, rs in runs.items()}
    rows = [
        Row(f"top-1 error, {ONE}", "—", pct(one), one),
        Row(f"top-1 error, {TWO}", "—", pct(two), two),
        Row("drop in top-1 error", "1.7 pts", points(gain), gain),
        Row(
            "parameters, one / two columns",
            "about equal (the footnote)",
            f"{params.get(ONE, 0):,} / {params.get(TWO, 0):,}",
        ),
        Row(
            "colourfulness of conv1, column A / B (two columns)",
            "one colour-agnostic, one colour-specific",
            "; ".join(f"{s['column_means'][0]:.2f} / {s['column_means'][1]:.2f}" for s in spec),
            [d for s in spec for d in s["column_means"]],
        ),
        Row(
            "columns' difference against random halves (per seed)",
            "in every run",
            "; ".join(f"{s['difference']:.3f} vs {s['null_median']:.3f} (p {s['p']:.3g})" for s in spec),
            [s["difference"] for s in spec],
        ),
        Row("training time per run, one / two columns", "—", f"{sec[ONE]:.0f} s / {sec[TWO]:.0f} s"),
    ]
    plots = [plot_arms(ctx.out / "columns.png", runs, "cifar_80sec (fc1024), one column vs two grouped columns")]
    notes = [
        "Both columns live on one device here (conv2 grouped); the paper split them over two GPUs. conv3 and "
        "the FC layers are the same size in both nets, as the paper's footnote kept its one-GPU net's last "
        f"convolutional and FC layers; {ctx.epochs} epochs on {ctx.train_images or 'all 45,000'} training "
        f"images, 2-pixel shifts and flips, lr {lr:g} (the pilot's). Top-5 error is not compared (ten classes).",
        "Colourfulness: per conv1 kernel on 0-255 pixels, 1 - 3 |mean over R, G, B|^2 / |kernel|^2 summed over "
        f"its 5x5 taps; a seed's statistic is |mean(A) - mean(B)| against {PERMUTATIONS} random halves of the "
        "same 64 kernels.",
    ]
    return Outcome(
        rows,
        [v, v_spec],
        plots,
        {
            "test_error": {"one": stats(one), "two": stats(two)},
            "gain": stats(gain),
            "seconds": sec,
            "specialisation": spec,
            "lr": lr,
        },
        notes,
    )
