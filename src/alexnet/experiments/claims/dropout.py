"""Dropout (§4.2): without it the network overfits substantially; dropout roughly doubles the
number of iterations required to converge.

Setting (protocol v2, "dropout"): cifar_80sec with a 1024-unit hidden layer, dropout 0 against 0.5
on that layer's outputs; no augmentation, so that the net without dropout fits its 45,000 training
images; one warm-up epoch, then a constant rate (the pilot's: the first at which the net without
dropout fits, at most 5% running training error, and the one with it trains), 30 epochs. Claims: the
test error drop from dropout (the net without it must have fit: otherwise there was no overfitting
to remove), and the ratio of the epochs each arm needs to reach its held-out plateau (the first
epoch within 1 pt of its lowest held-out error; censored when the lowest is in the last 3 epochs).
Evidence: ``docs/paper/dropout`` (2-core CPU); superseded: ``docs/paper/v1/dropout``.
"""

from __future__ import annotations

import math

from ..context import Context
from ..library import Outcome, Row, Run, censored_ratio, diff, experiment, merge_configs, num, pct, points, stats
from ..plots import plot_arms
from ..verdicts import Precondition, judge, measured
from ._common import FAST, FITS, NO_AUGMENTATION, final_train_errors, plateau_epoch, train_set_errors

OFF, ON = "no dropout", "dropout 0.5"
FITTED = 0.05  # the net without dropout has fit its training set: running training error at most this
PLATEAU = 0.01  # the held-out plateau: within this of the run's lowest held-out error
RATES = (0.01, 0.02, 0.005)


def _check(run: Run) -> str | None:
    err = float(run.final["train_top1_error"])
    bound = FITTED if not run.config["model_options"].get("dropout") else FITS
    return None if err <= bound else f"training error {err:.1%} after {len(run.metrics)} epochs (> {bound:.0%})"


@experiment(
    "dropout",
    title="Dropout removes overfitting, at about twice the iterations (§4.2)",
    section="§4.2",
    claim="without dropout the network overfits substantially; dropout roughly doubles the number of "
    "iterations required to converge",
    data="cifar10",
    seeds=6,
    epochs=30,
    train_images=None,
    minutes=160.0,
)
def dropout(ctx: Context) -> Outcome:
    base = merge_configs(
        FAST, NO_AUGMENTATION, {"model": "cifar_80sec", "schedule": "constant", "model_options": {"hidden": 1024}}
    )
    arms = {OFF: {"model_options": {"dropout": 0.0}}, ON: {"model_options": {"dropout": 0.5}}}
    lr = ctx.choose_rate(base, arms, RATES, _check)
    runs = ctx.paired(merge_configs(base, {"lr": lr}), arms)
    test = {a: [r.test_error for r in rs] for a, rs in runs.items()}
    fit = {a: final_train_errors(rs) for a, rs in runs.items()}
    train = {a: train_set_errors(ctx, rs) for a, rs in runs.items()}
    gap = {a: diff(test[a], train[a]) for a in runs}
    gain = diff(test[OFF], test[ON])
    overfit = Precondition(
        max(fit[OFF]) <= FITTED,
        f"the net without dropout did not fit its training set (running "
        f"training error up to {max(fit[OFF]):.1%} > {FITTED:.0%})",
    )
    v1 = judge(
        gain,
        None,
        "the test error drop from dropout",
        figure=points(gain),
        claimed='"overfits substantially" without',
        preconditions=[overfit],
    )
    plateaus = {a: [plateau_epoch(r.curve("val_top1_error"), PLATEAU) for r in rs] for a, rs in runs.items()}
    reach = {a: [math.nan if cens else ep for ep, cens in ps] for a, ps in plateaus.items()}
    logs, censored, signs = censored_ratio(reach[ON], reach[OFF])
    slow = f"{math.exp(stats(logs)['mean']):.2f}x" if logs else "n/a"
    figure = slow + (f"; {censored} run(s) still improving at the end" if censored else "")
    v2 = judge(
        logs,
        2.0,
        "epochs to the held-out plateau, with / without dropout",
        figure=figure,
        claimed="about 2x",
        log=True,
        scale=1.0,
        unit=" (log ratio)",
        censored=censored,
        signs=signs,
    )
    v3 = measured(
        diff(gap[OFF], gap[ON]), "the drop in the train/test gap from dropout", figure=points(diff(gap[OFF], gap[ON]))
    )
    rows = [
        Row(
            "test error without / with dropout",
            "lower with",
            f"{pct(test[OFF])} / {pct(test[ON])}",
            test[OFF] + test[ON],
        ),
        Row("drop in test error", "positive", points(gain), gain),
        Row(
            "running training error at the end, without / with",
            "—",
            f"{pct(fit[OFF])} / {pct(fit[ON])}",
            fit[OFF] + fit[ON],
        ),
        Row(
            "train/test gap without / with",
            '"overfits substantially" without',
            f"{points(gap[OFF])} / {points(gap[ON])}",
            gap[OFF] + gap[ON],
        ),
        Row(
            "epochs to the held-out plateau, without / with",
            "—",
            f"{num(reach[OFF])} / {num(reach[ON])}",
            reach[OFF] + reach[ON],
        ),
        Row("epochs to converge, with / without", "about 2x", figure, [math.exp(x) for x in logs]),
    ]
    plots = [plot_arms(ctx.out / "dropout.png", runs, "cifar_80sec (fc1024), with / without dropout")]
    notes = [
        f"No augmentation, one warm-up epoch then a constant rate {lr:g} (the pilot's), {ctx.epochs} epochs on "
        f"{ctx.train_images or 'all 45,000'} training images; dropout 0.5 on the hidden FC layer's outputs.",
        f"Held-out plateau: the first epoch whose held-out error (5,000 images) is within {PLATEAU * 100:.0f} pt "
        "of the run's lowest; a run whose lowest is in its last 3 epochs is censored. Training-set error (the "
        "gap) is measured on up to 10,000 training images without dropout or augmentation.",
    ]
    return Outcome(
        rows,
        [v1, v2, v3],
        plots,
        {
            "test_error": {a: stats(x) for a, x in test.items()},
            "gain": stats(gain),
            "final_train_error": {a: stats(x) for a, x in fit.items()},
            "train_error": {a: stats(x) for a, x in train.items()},
            "gap": {a: stats(x) for a, x in gap.items()},
            "plateau_epoch": {a: stats([e for e, _ in ps]) for a, ps in plateaus.items()},
            "censored_runs": censored,
            "lr": lr,
        },
        notes,
    )
