"""Weight decay (§5): the small amount of weight decay (0.0005) is not merely a regulariser, it
reduces the model's training error.

Setting (protocol v2, "weight-decay"; not run: its length does not fit this machine's budget): the
fast recipe's settings, weight decay 0 against 5e-4, for long enough that the decay can act: the sum
over steps of lr x weight decay reaches 0.53 in 120 epochs on 45,000 images (AlexNet's run: about
2; the first version's 10 epochs on 10,000 images: 0.01). Statistic: the final weights' error on
the training images (evaluation transform) without minus with; the paper gives no size.
Evidence: none yet; the first version's, superseded: ``docs/paper/v1/weight-decay``.
"""

from __future__ import annotations

from ..context import Context
from ..library import Outcome, Row, diff, experiment, pct, points, stats
from ..plots import plot_arms
from ..verdicts import judge
from ._common import FAST, train_set_errors

OFF, ON = "no weight decay", "weight decay 5e-4"


@experiment(
    "weight-decay",
    title="Weight decay lowers the training error (§5)",
    section="§5",
    claim="this small amount of weight decay (0.0005) is important for the model to learn: it is not merely a "
    "regularizer, it reduces the model's training error",
    data="cifar10",
    seeds=5,
    epochs=120,
    train_images=None,
    minutes=400.0,
)
def weight_decay(ctx: Context) -> Outcome:
    runs = ctx.paired(FAST, {OFF: {"weight_decay": 0.0}, ON: {"weight_decay": 5e-4}})
    test = {a: [r.test_error for r in rs] for a, rs in runs.items()}
    train = {a: train_set_errors(ctx, rs) for a, rs in runs.items()}
    gain = diff(train[OFF], train[ON])
    v = judge(
        gain, None, "the training-set error drop from weight decay", figure=points(gain), claimed="lower training error"
    )
    rows = [
        Row(
            "training-set error without / with weight decay",
            "lower with",
            f"{pct(train[OFF])} / {pct(train[ON])}",
            train[OFF] + train[ON],
        ),
        Row("drop in training-set error", "positive", points(gain), gain),
        Row("test error without / with", "—", f"{pct(test[OFF])} / {pct(test[ON])}", test[OFF] + test[ON]),
    ]
    plots = [plot_arms(ctx.out / "weight_decay.png", runs, "cifar_18pct with / without weight decay 5e-4")]
    notes = [
        f"Training-set error: the final weights on up to 10,000 of their training images, without augmentation. "
        f"{ctx.epochs} epochs on {ctx.train_images or 'all 45,000'} training images, the fast recipe's settings."
    ]
    return Outcome(
        rows,
        [v],
        plots,
        {
            "train_error": {a: stats(x) for a, x in train.items()},
            "test_error": {a: stats(x) for a, x in test.items()},
            "gain": stats(gain),
        },
        notes,
    )
