"""Biases of 1 (§5): initialising the hidden layers' biases to 1 accelerates the early stages of
learning by giving the ReLUs positive inputs.

Setting (protocol v2, "bias-one"): relu-vs-tanh's paper setting, where ReLU nets learn from the
first epoch (cuda-convnet's initialisation, 0-255 mean-subtracted input, no weight decay,
augmentation or dropout, classical momentum 0.9, the constant rate 0.005 its search chose for
ReLU), with conv2's and conv3's biases 0 against 1; each run stops at 50% running training error,
cap 10 epochs. Statistic: per seed, log(epochs to 50% with biases 0 / with biases 1); the paper
gives no size.
Evidence: ``docs/paper/bias-one`` (2-core CPU); superseded: ``docs/paper/v1/bias-one``.
"""

from __future__ import annotations

import math

from ..context import Context
from ..library import Outcome, Row, censored_ratio, epochs_to_reach, experiment, merge_configs, num, stats
from ..plots import plot_training_error
from ..verdicts import judge
from ._common import NO_AUGMENTATION
from .relu_vs_tanh import CIFAR_V1, RELU_CONDITIONS

TARGET = 0.5
RELU_RATE = 0.005  # relu-vs-tanh's search, the paper's setting (docs/paper/v1/relu-vs-tanh)


@experiment(
    "bias-one",
    title="Biases of 1 speed up early learning (§5)",
    section="§5",
    claim="initialising the neuron biases of the hidden layers to the constant 1 accelerates the early stages "
    "of learning by providing the ReLUs with positive inputs",
    data="cifar10",
    seeds=5,
    epochs=10,
    train_images=None,
    minutes=15.0,
)
def bias_one(ctx: Context) -> Outcome:
    paper = {k: v for k, v in RELU_CONDITIONS["paper"].items() if k != "candidates"}
    base = merge_configs(
        CIFAR_V1,
        NO_AUGMENTATION,
        paper,
        {
            "weight_decay": 0.0,
            "schedule": "constant",
            "nesterov": False,
            "eval_every": 1000,
            "lr": RELU_RATE,
            "target_train_error": TARGET,
            "model_options": {"activation": "relu"},
        },
    )
    zero, one = "biases 0", "biases 1"
    runs = ctx.paired(
        base, {zero: {"model_options": {"hidden_bias": 0.0}}, one: {"model_options": {"hidden_bias": 1.0}}}
    )
    ep = {a: [epochs_to_reach(r.curve("train_top1_error"), TARGET) for r in rs] for a, rs in runs.items()}
    logs, censored, signs = censored_ratio(ep[zero], ep[one])
    figure = (f"{math.exp(stats(logs)['mean']):.2f}x" if logs else "n/a") + (
        f"; {censored} run(s) never reached {TARGET:.0%} in {ctx.epochs} epochs" if censored else ""
    )
    v = judge(
        logs,
        None,
        f"epochs to {TARGET:.0%} training error, biases 0 / biases 1",
        figure=figure,
        claimed="faster early learning",
        log=True,
        scale=1.0,
        unit=" (log ratio)",
        censored=censored,
        signs=signs,
    )
    first = {a: [float(r.metrics[0]["train_top1_error"]) for r in rs] for a, rs in runs.items()}
    rows = [
        Row(f"epochs to {TARGET:.0%} running training error, biases 0", "—", num(ep[zero]), ep[zero]),
        Row(f"epochs to {TARGET:.0%} running training error, biases 1", "fewer", num(ep[one]), ep[one]),
        Row("ratio, biases 0 / 1", "above 1", figure, [math.exp(x) for x in logs]),
        Row(
            "running training error over the first epoch, biases 0 / 1",
            "—",
            f"{num([100 * x for x in first[zero]], '%')} / {num([100 * x for x in first[one]], '%')}",
            first[zero] + first[one],
        ),
    ]
    plots = [
        plot_training_error(
            ctx.out / "bias_one.png",
            {zero: runs[zero], one: runs[one]},
            TARGET,
            "cifar_18pct in the paper's setting, hidden biases 0 (solid) vs 1 (dashed)",
            {one: "--"},
        )
    ]
    notes = [
        "cifar_18pct without response normalisation, cuda-convnet's initialisation (weights N(0, 1e-4) in conv1, "
        "N(0, 0.01) after) on 0-255 mean-subtracted input, as relu-vs-tanh's paper setting; conv2's and conv3's "
        f"biases 1 in one arm (AlexNet: conv2, conv4, conv5 and the hidden FC layers). Constant lr {RELU_RATE:g}, "
        f"classical momentum 0.9; each run stops at {TARGET:.0%} running training error, at most {ctx.epochs} "
        "epochs; epochs to the target interpolated between epoch ends."
    ]
    return Outcome(
        rows,
        [v],
        plots,
        {"epochs_to_target": {a: stats(x) for a, x in ep.items()}, "log_ratio": stats(logs), "censored_runs": censored},
        notes,
    )
