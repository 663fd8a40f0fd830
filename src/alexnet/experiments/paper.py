"""The paper's claims as experiments (PAPER.md, "The paper's ingredients"), each a short function
over the library's training API. They run on CIFAR-10 (or MNIST) at 32x32 on a CPU in minutes, so
they test each ingredient on the small networks the paper itself used for its CIFAR-10 claims
(cuda-convnet's layers-18pct / 80sec), not on ImageNet at 224x224; the reports say so where it
matters.

Every arm, seed count, stopping rule, learning-rate procedure, statistic and verdict rule here is
the one ``docs/paper/protocol.md`` fixes before the runs; a change to an experiment is a change to
the protocol (and means rerunning what it covers).

Common to the CIFAR-10 experiments unless an experiment says otherwise: SGD with Nesterov momentum
0.9, batch 128, learning rate 0.05 decayed linearly to zero, weight decay 5e-4, per-channel
standardised input, PyTorch's default initialisation, 10% of the training split held out for the
per-epoch evaluation (``val_split``; the test split is seen once, by the final weights), and for
the paired arms of one seed the same training subset, initial seed and data order.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from ..config import load_recipe
from .base import (EXPERIMENTS, Context, Outcome, Row, Verdict, epochs_to_reach, experiment, judge, judge_level,
                   measured, merge_configs, pct, points, seconds_to_reach, spread, stats)
from .plots import plot_arms, plot_lr_search, plot_training_error

__all__ = ["EXPERIMENTS"]  # the registry, filled by the @experiment functions below

CIFAR: dict[str, Any] = dict(
    model="cifar_18pct", batch_size=128, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4,
    schedule="linear", warmup_epochs=0.0, random_crop=True, translate=2, flip=True, normalize="meanstd",
    val_split=0.1, model_options={"init": "torch", "lrn": "none"},
)
NO_AUGMENTATION = dict(random_crop=False, translate=0, flip=False)


def cuda_convnet_setting() -> dict[str, Any]:
    """cuda-convnet's own 18pct setting (the shipped ``cifar_18pct_cudaconvnet`` recipe: the mean image
    subtracted from 0-255 pixels, its initialisation, lr 0.001 with biases at twice the rate, classical
    momentum 0.9, weight cost 0.004 and 1 for fc10, no augmentation) at a constant rate, with the
    common held-out split."""
    recipe = {k: v for k, v in load_recipe("cifar_18pct_cudaconvnet").items() if k not in ("data", "epochs", "milestones")}
    return merge_configs(recipe, {"schedule": "constant", "val_split": 0.1})


def _paired(ctx: Context, base: dict[str, Any], arms: dict[str, dict[str, Any]]) -> dict[str, list]:
    """Train every arm for every seed (seed-major, so an interrupted experiment has whole pairs)."""
    runs: dict[str, list] = {a: [] for a in arms}
    for seed in ctx.seeds:
        for arm, changes in arms.items():
            runs[arm].append(ctx.run(arm, seed, base, **changes))
    return runs


def _num(values: list[float], unit: str = "", digits: int = 1) -> str:
    """``6.5 ± 0.2 (3 seeds)`` of plain numbers (NaNs, runs that never got there, left out)."""
    return spread(values, unit=unit, digits=digits, empty="not reached")


def _errors_and_gaps(ctx: Context, runs: dict[str, list]) -> tuple[dict[str, list[float]], ...]:
    """Per arm: test errors, training-set errors (``_train_set_errors``) and their gaps."""
    test = {a: [r.test_error for r in rs] for a, rs in runs.items()}
    train = {a: _train_set_errors(ctx, rs) for a, rs in runs.items()}
    gap = {a: [t - tr for t, tr in zip(test[a], train[a])] for a in runs}
    return test, train, gap


def _train_set_errors(ctx: Context, runs: list, n: int = 10000) -> list[float]:
    """Error of each run's final weights on (up to n of) the images it was trained on, without
    augmentation or dropout: the training side of the generalisation gap."""
    return [ctx.measure(r, "train_eval_top1_error", lambda r=r: ctx.evaluate(r, split="train", max_images=n))
            for r in runs]


def _diff(a: list[float], b: list[float]) -> list[float]:
    """Per-seed a - b."""
    return [x - y for x, y in zip(a, b)]


def _censored_ratio(slow: list[float], fast: list[float]) -> tuple[list[float], int, list[int]]:
    """Per-seed log(slow / fast) of two times-to-target (NaN: never reached), the number of censored
    runs and each pair's sign for the sign test (+1: ``slow`` is the slower one, as claimed; 0: both
    censored, order unknown). A censored time counts as the last epoch in the log ratio (a bound)."""
    logs, signs, censored = [], [], 0
    for s, f in zip(slow, fast):
        censored += math.isnan(s) + math.isnan(f)
        if math.isnan(s) and math.isnan(f):
            signs.append(0)
        elif math.isnan(s):
            signs.append(1)
        elif math.isnan(f):
            signs.append(-1)
        else:
            signs.append(1 if s > f else -1 if s < f else 0)
        if not (math.isnan(s) or math.isnan(f)):
            logs.append(math.log(s / f))
    return logs, censored, signs


LR_SEARCH_EXTEND = 6  # how far the learning-rate grid may grow past either end
LR_SEARCH_EPOCHS = 3  # relu-vs-tanh: a rate's score is the training error after this many epochs


def step_125(x: float, up: bool) -> float:
    """The next value of the 1-2-5 series above (or below) ``x``: 0.005 -> 0.01, 0.01 -> 0.005."""
    exp = math.floor(math.log10(x) + 1e-9)
    mant = round(x / 10 ** exp, 6)
    series = [1.0, 2.0, 5.0, 10.0] if up else [0.5, 1.0, 2.0, 5.0]
    if up:
        nxt = next(m for m in series if m > mant + 1e-9)
    else:
        nxt = next(m for m in reversed(series) if m < mant - 1e-9)
    return float(f"{nxt * 10 ** exp:.6g}")


def search_learning_rate(score: Callable[[float], float], candidates: Sequence[float],
                         extend: int = LR_SEARCH_EXTEND) -> dict[float, float]:
    """``score`` (lower is better; ``inf`` for a diverging rate) at every candidate rate, the grid
    grown past an end for as long as the best rate sits at that end (up to ``extend`` steps each way,
    stopping at a rate that diverges), so that the best is bracketed: a worse (or diverging) rate
    on each side. Returns every rate tried and its score."""
    scores = {lr: score(lr) for lr in candidates}
    for up in (True, False):
        for _ in range(extend):
            best = min(scores, key=lambda lr: (scores[lr], lr))
            edge = max(scores) if up else min(scores)
            if best != edge or math.isinf(scores[best]):
                break
            nxt = step_125(edge, up)
            scores[nxt] = score(nxt)
            if math.isinf(scores[nxt]):
                break
    return dict(sorted(scores.items()))


def bracketed(scores: dict[float, float]) -> bool:
    """Whether the best rate has a tried rate on each side (a diverging top counts as a side)."""
    tried = sorted(scores)
    best = min(scores, key=lambda lr: (scores[lr], lr))
    return tried[0] < best < tried[-1]


# -- Figure 1: ReLU against tanh ------------------------------------------------------------------
# The two conditions, fixed before any run: the paper's (cuda-convnet's initialisation, the mean
# image subtracted from 0-255 pixels, as cuda-convnet fed its nets) first, the verdict's; and the
# easier one (standardised inputs, PyTorch's fan-in initialisation), reported beside it.
RELU_CONDITIONS: dict[str, dict[str, Any]] = {
    "paper": {"normalize": "mean_image", "model_options": {"init": "cuda-convnet"},
              "candidates": (0.0005, 0.001, 0.002, 0.005)},
    "standardised": {"normalize": "meanstd", "model_options": {"init": "torch"},
                     "candidates": (0.01, 0.02, 0.05, 0.1)},
}


@experiment(
    "relu-vs-tanh", title="ReLU trains faster than tanh (Figure 1)", section="§3.1, Figure 1",
    claim="a four-layer CNN with ReLUs reaches 25% training error on CIFAR-10 six times faster than the "
          "same network with tanh neurons (no regularisation; learning rates chosen separately for each)",
    data="cifar10", seeds=5, epochs=60, train_images=None, minutes=180.0,
)
def relu_vs_tanh(ctx: Context) -> Outcome:
    target = 0.25
    # the four-layer net (conv-conv-conv-fc), no regularisation of any kind, constant rate, classical
    # momentum as cuda-convnet and §5 use
    common = merge_configs(CIFAR, NO_AUGMENTATION, {"weight_decay": 0.0, "schedule": "constant", "nesterov": False,
                                                    "eval_every": 1000})
    rows: list[Row] = []
    found: dict[str, Any] = {"target_train_error": target}
    plots: list[str] = []
    verdicts: list[Verdict] = []
    notes: list[str] = []
    for cond, setting in RELU_CONDITIONS.items():
        label = "paper's setting" if cond == "paper" else "standardised inputs"
        base = merge_configs(common, {k: v for k, v in setting.items() if k != "candidates"})
        # the rate search (protocol): on seed 0, each rate's training error after LR_SEARCH_EPOCHS epochs on
        # the whole training split; the grid grows past an end while the best rate sits there
        search: dict[str, dict[float, float]] = {}
        for act in ("relu", "tanh"):
            def score(lr: float, act: str = act) -> float:
                try:
                    r = ctx.run(f"{cond}-search-{act}-lr{lr:g}", 0, base, lr=lr, epochs=LR_SEARCH_EPOCHS,
                                model_options={"activation": act})
                    return float(r.final["train_top1_error"])
                except Exception as e:  # a diverging rate is a result of the search, not a failure
                    if "not finite" not in str(e):
                        raise
                    return math.inf
            search[act] = search_learning_rate(score, setting["candidates"])
        best = {act: min(by_lr, key=lambda lr: (by_lr[lr], lr)) for act, by_lr in search.items()}
        ctx.runs = [r for r in ctx.runs if "-search-" not in r.arm]
        arms = {f"{cond}-{act}": {"lr": best[act], "target_train_error": target, "model_options": {"activation": act}}
                for act in ("relu", "tanh")}
        runs = _paired(ctx, base, arms)
        relu, tanh = runs[f"{cond}-relu"], runs[f"{cond}-tanh"]
        ep = {a: [epochs_to_reach([float(m["train_top1_error"]) for m in r.metrics], target) for r in rs]
              for a, rs in (("relu", relu), ("tanh", tanh))}
        sec = {a: [seconds_to_reach([float(m["train_top1_error"]) for m in r.metrics], r.train_seconds(), target)
                   for r in rs] for a, rs in (("relu", relu), ("tanh", tanh))}
        logs, censored, signs = _censored_ratio(ep["tanh"], ep["relu"])
        missed = {a: sum(math.isnan(v) for v in vs) for a, vs in ep.items()}
        if censored:
            relu_max = max((v for v in ep["relu"] if not math.isnan(v)), default=math.nan)
            figure = (f"tanh: {missed['tanh']} of {len(tanh)} runs never reached {target:.0%} in {ctx.epochs} epochs "
                      f"(ReLU: {_num(ep['relu'])}); ratio at least {ctx.epochs / relu_max:.1f}x"
                      if not missed["relu"] else f"{missed['relu']} ReLU and {missed['tanh']} tanh runs never got there")
        else:
            figure = f"{math.exp(stats(logs)['mean']):.1f}x (geometric mean over {len(logs)} seeds)"
        v = judge(logs, 6.0, f"{label}: ReLU reaches {target:.0%} training error sooner than tanh", figure=figure,
                  claimed="6x", log=True, scale=1.0, unit=" (log ratio)", censored=censored, signs=signs)
        verdicts.append(v)

        def fmt(values: list[float], a: str, unit: str = "") -> str:
            n = missed.get(a, 0)
            return spread(values, unit=unit, empty=f"not reached in {ctx.epochs} epochs") + \
                (f"; {n} of {len(values)} runs never reached it" if n else "")

        rows += [
            Row(f"{label}: learning rate chosen (ReLU / tanh)", "tuned separately",
                f"{best['relu']:g} / {best['tanh']:g} (tried ReLU {', '.join(f'{c:g}' for c in search['relu'])}; "
                f"tanh {', '.join(f'{c:g}' for c in search['tanh'])})"),
            Row(f"{label}: epochs to {target:.0%} training error, ReLU", "— (Figure 1)", fmt(ep["relu"], "relu"),
                ep["relu"]),
            Row(f"{label}: epochs to {target:.0%} training error, tanh", "six times ReLU's", fmt(ep["tanh"], "tanh"),
                ep["tanh"]),
            Row(f"{label}: seconds to get there, ReLU / tanh", "—", f"{_num(sec['relu'], ' s')} / {_num(sec['tanh'], ' s')}",
                sec["relu"] + sec["tanh"]),
            Row(f"{label}: tanh / ReLU epochs", "6x", figure, [math.exp(x) for x in logs]),
        ]
        for a in ("relu", "tanh"):
            if not bracketed(search[a]):
                notes.append(f"{label}: {a}'s best rate ({best[a]:g}) is not bracketed by the grown grid (the search "
                             f"stops after {LR_SEARCH_EXTEND} steps each way): its speed may be underrated.")
        found[cond] = {"epochs_to_target": {a: stats(v) for a, v in ep.items()},
                       "seconds_to_target": {a: stats(v) for a, v in sec.items()},
                       "log_ratio": stats(logs), "censored_runs": censored,
                       "lr_search": {a: {f"{lr:g}": e for lr, e in d.items()} for a, d in search.items()},
                       "chosen_lr": best}
        plots += [
            plot_training_error(ctx.out / f"figure1-{cond}.png", {"ReLU": relu, "tanh": tanh}, target,
                                f"Figure 1 ({label}): four-layer CNN on CIFAR-10, ReLU (solid) vs tanh (dashed)",
                                {"tanh": "--"}),
            plot_lr_search(ctx.out / f"lr_search-{cond}.png", search,
                           f"learning-rate search ({label}): training error after {LR_SEARCH_EPOCHS} epochs"),
        ]
    notes = [f"Runs stop once their training error (the running error over an epoch, as cuda-convnet reported it) "
             f"reaches {target:.0%}, at most {ctx.epochs} epochs; a run that never does is censored.",
             "Network: cuda-convnet's layers-18pct without response normalisation (conv-conv-conv-fc), no weight "
             "decay, no augmentation, no dropout, constant learning rate, classical momentum 0.9.",
             "The paper's setting (the verdict): cuda-convnet's initialisation and the mean image subtracted from "
             "0-255 pixels. The second setting (standardised inputs, PyTorch's fan-in initialisation) is reported "
             "beside it.", *notes]
    return Outcome(rows, verdicts, plots, found, notes)


# -- §3.3: local response normalisation --------------------------------------------------------
@experiment(
    "lrn", title="Local response normalisation lowers the error (§3.3)", section="§3.3",
    claim="on CIFAR-10 a four-layer CNN had 13% test error without normalisation and 11% with it",
    data="cifar10", seeds=7, epochs=8, train_images=10000, minutes=9.0,
    pilot=(0.02, 0.017, "the previous run's pixel-scale arm, 3 seeds"),
)
def lrn(ctx: Context) -> Outcome:
    # cuda-convnet's own setting (0-255 mean-subtracted input, its initialisation and rates), where its
    # cmrnorm constants (9 maps, scale 0.001 / 9, power 0.75) act as they did: no rescaling guess
    base = cuda_convnet_setting()
    runs = _paired(ctx, base, {"none": {"model_options": {"lrn": "none"}},
                               "cross-map": {"model_options": {"lrn": "cross"}}})
    test = {a: [r.test_error for r in rs] for a, rs in runs.items()}
    gain = _diff(test["none"], test["cross-map"])
    v = judge(gain, 0.02, "the test error drop from cross-map LRN", figure=points(gain), claimed="2 pts (13% -> 11%)")
    rows = [Row("test error without LRN", "13%", pct(test["none"]), test["none"]),
            Row("test error with cross-map LRN", "11%", pct(test["cross-map"]), test["cross-map"]),
            Row("drop in test error", "2 pts", points(gain), gain)]
    plots = [plot_arms(ctx.out / "lrn.png", runs, "cifar_18pct in cuda-convnet's setting, with / without cross-map LRN")]
    notes = ["The paper's 13%/11% come from cuda-convnet's layers-conv-local nets trained far longer; here "
             "cifar_18pct (3 conv + 1 fc) in cuda-convnet's own setting (the cifar_18pct_cudaconvnet recipe at a "
             "constant rate: 0-255 mean-subtracted input, its initialisation, lr 0.001, biases at 2x, weight cost "
             f"0.004), cmrnorm after pool1 and pool2, {ctx.epochs} epochs on {ctx.train_images or 'all'} training "
             "images, no augmentation."]
    return Outcome(rows, [v], plots, {"test_error": {a: stats(x) for a, x in test.items()}, "gain": stats(gain)}, notes)


# -- §3.4: overlapping pooling ---------------------------------------------------------------
@experiment(
    "overlap-pool", title="Overlapping pooling (§3.4)", section="§3.4",
    claim="pooling with z=3, s=2 instead of z=2, s=2 lowers top-1 / top-5 error by 0.4% / 0.3%, and the "
          "network is slightly harder to overfit",
    data="cifar10", seeds=8, epochs=10, train_images=10000, minutes=9.0,
    pilot=(0.004, 0.029, "the previous run (average pools), 3 seeds"),
)
def overlap_pool(ctx: Context) -> Outcome:
    # all three pools max (the claim is about max pooling); no augmentation, so that overfitting (the
    # train/test gap) shows within a few epochs
    # one epoch of warm-up (the protocol's amendment): without it seed 3's z=3 arm diverged at step 40
    base = merge_configs(CIFAR, NO_AUGMENTATION, {"warmup_epochs": 1.0, "model_options": {"pools": "max"}})
    runs = _paired(ctx, base, {"z=3, s=2": {"model_options": {"pool": "overlap"}},
                               "z=2, s=2": {"model_options": {"pool": "non-overlap"}}})
    test, train, gap = _errors_and_gaps(ctx, runs)
    gain = _diff(test["z=2, s=2"], test["z=3, s=2"])
    gap_gain = _diff(gap["z=2, s=2"], gap["z=3, s=2"])
    v1 = judge(gain, 0.004, "the top-1 error drop from overlapping max pools", figure=points(gain), claimed="0.4 pts")
    v2 = judge(gap_gain, None, "the drop in the train/test gap (harder to overfit)", figure=points(gap_gain),
               claimed="\"slightly\"")
    rows = [
        Row("test error, z=2 s=2", "—", pct(test["z=2, s=2"]), test["z=2, s=2"]),
        Row("test error, z=3 s=2", "—", pct(test["z=3, s=2"]), test["z=3, s=2"]),
        Row("train/test gap, z=2 s=2", "—", points(gap["z=2, s=2"]), gap["z=2, s=2"]),
        Row("train/test gap, z=3 s=2", "smaller (\"slightly harder to overfit\")", points(gap["z=3, s=2"]),
            gap["z=3, s=2"]),
        Row("drop in test error (top-1)", "0.4 pts", points(gain), gain),
    ]
    plots = [plot_arms(ctx.out / "overlap_pool.png", runs, "cifar_18pct with max pools, overlapping vs adjacent")]
    notes = ["cifar_18pct with all three pools max (the configs' second and third are average pools; the claim is "
             f"about max pooling). No augmentation, {ctx.epochs} epochs on {ctx.train_images or 'all'} training "
             "images, the first a linear warm-up (the protocol's amendment: without it one run diverged); "
             "training error measured with the evaluation transform on up to 10,000 of them.",
             "The protocol's power calculation: the paper's 0.4 pts is far below what this many seeds can detect "
             "(see the protocol); a \"not significant\" here says the effect is small, not that it is absent."]
    return Outcome(rows, [v1, v2], plots,
                   {"test_error": {a: stats(x) for a, x in test.items()}, "train_error": {a: stats(x) for a, x in train.items()},
                    "gap": {a: stats(x) for a, x in gap.items()}, "gain": stats(gain), "gap_reduction": stats(gap_gain)},
                   notes)


# -- §4.2: dropout -----------------------------------------------------------------------------
@experiment(
    "dropout", title="Dropout removes overfitting, at twice the iterations (§4.2)", section="§4.2",
    claim="without dropout the network overfits substantially; dropout roughly doubles the number of "
          "iterations required to converge",
    data="cifar10", seeds=5, epochs=12, train_images=10000, minutes=10.2,
)
def dropout(ctx: Context) -> Outcome:
    # cifar_80sec with a 256-unit hidden layer, no augmentation and a constant rate so that neither
    # the schedule nor the data hides how fast each arm fits; dropout 0.5 on the hidden FC layer's
    # outputs, as the paper drops the outputs of its hidden FC layers (not the pooled conv features)
    base = merge_configs(CIFAR, NO_AUGMENTATION, {"model": "cifar_80sec", "schedule": "constant", "lr": 0.01,
                                                  "model_options": {"hidden": 256}})
    off, on = "no dropout", "dropout 0.5"
    runs = _paired(ctx, base, {off: {"model_options": {"dropout": 0.0}}, on: {"model_options": {"dropout": 0.5}}})
    test, train, gap = _errors_and_gaps(ctx, runs)
    # Iterations to converge, measured as the epochs to fit the training set to a given level: the
    # level the network without dropout reached after a third of the run; the ratio is how many
    # times longer the network with dropout takes to get there (censored if it never does).
    k = max(1, len(runs[off][0].metrics) // 3)
    level = [float(r.metrics[k - 1]["train_top1_error"]) for r in runs[off]]
    reach = [epochs_to_reach([float(m["train_top1_error"]) for m in r.metrics], lv) for r, lv in zip(runs[on], level)]
    logs, censored, signs = _censored_ratio(reach, [float(k)] * len(reach))
    gap_gain = _diff(gap[off], gap[on])
    v1 = judge(gap_gain, None, "the drop in the train/test gap from dropout", figure=points(gap_gain),
               claimed="\"overfits substantially\" without")
    slow = f"{math.exp(stats(logs)['mean']):.2f}x" if logs else "n/a"
    figure = slow + (f"; {censored} run(s) never got there (more than {len(runs[on][0].metrics) / k:.1f}x)"
                     if censored else "")
    v2 = judge(logs, 2.0, "iterations to converge, with / without dropout", figure=figure, claimed="about 2x",
               log=True, scale=1.0, unit=" (log ratio)", censored=censored, signs=signs)
    rows = [
        Row("train/test gap without dropout", "\"overfits substantially\"", points(gap[off]), gap[off]),
        Row("train/test gap with dropout", "much smaller", points(gap[on]), gap[on]),
        Row("drop in the gap", "—", points(gap_gain), gap_gain),
        Row("final test error without / with dropout", "—", f"{pct(test[off])} / {pct(test[on])}", test[off] + test[on]),
        Row(f"training error reached without dropout after {k} epochs", "—", pct(level), level),
        Row("epochs with dropout to reach it", "—", _num(reach), reach),
        Row("iterations to converge, with / without", "about 2x", figure, [math.exp(x) for x in logs]),
    ]
    plots = [plot_arms(ctx.out / "dropout.png", runs, "cifar_80sec (fc256), with / without dropout")]
    notes = [f"Convergence: the epochs the network with dropout needs to reach the training error (running, with "
             f"dropout active) that the one without reached after {k} of the {ctx.epochs} epochs.",
             f"No augmentation, constant learning rate 0.01, {ctx.epochs} epochs on "
             f"{ctx.train_images or 'all'} training images; training-set error measured without dropout."]
    return Outcome(rows, [v1, v2], plots,
                   {"test_error": {a: stats(x) for a, x in test.items()},
                    "train_error": {a: stats(x) for a, x in train.items()}, "gap": {a: stats(x) for a, x in gap.items()},
                    "gap_reduction": stats(gap_gain), "fit_level": stats(level), "fit_epochs_without": k,
                    "fit_epochs_with": stats(reach), "log_slowdown": stats(logs), "censored_runs": censored}, notes)


# -- §4.1: crops, flips and PCA colour noise ---------------------------------------------------
CROPS = dict(image_size=32, crop_size=24, model_options={"input_size": 24})  # 24 of 32, like 224 of 256


@experiment(
    "augment", title="Data augmentation: crops and flips, PCA colour noise (§4.1)", section="§4.1",
    claim="without random crops and flips the network overfits badly; the PCA colour noise lowers top-1 "
          "error by over 1%",
    data="cifar10", seeds=9, epochs=10, train_images=10000, minutes=14.7,
    pilot=(0.01, 0.0105, "the previous run's PCA arm (fb.resnet form), 3 seeds"),
)
def augment(ctx: Context) -> Outcome:
    # the paper's scheme scaled down: random 24x24 patches of the 32x32 images (224 of 256) and their
    # reflections; the unaugmented arm trains on the centre 24x24 patch; all test on the centre patch.
    # The colour noise in cuda-convnet2's form (pca_lighting_form = cuda-convnet), coefficient 0.1.
    base = merge_configs(CIFAR, CROPS, {"translate": 0, "pca_lighting_form": "cuda-convnet"})
    runs = _paired(ctx, base, {
        "none": {"random_crop": False, "flip": False},
        "crops+flips": {"random_crop": True, "flip": True},
        "crops+flips+PCA": {"random_crop": True, "flip": True, "pca_lighting": 0.1},
    })
    test, train, gap = _errors_and_gaps(ctx, runs)
    crop_gain = _diff(test["none"], test["crops+flips"])
    gap_gain = _diff(gap["none"], gap["crops+flips"])
    pca_gain = _diff(test["crops+flips"], test["crops+flips+PCA"])
    v_pca = judge(pca_gain, 0.01, "the top-1 error drop from PCA colour noise", figure=points(pca_gain),
                  claimed="over 1 pt")
    v_crop = judge(gap_gain, None, "the drop in the train/test gap from crops and flips", figure=points(gap_gain),
                   claimed="\"overfits badly\" without")
    rows = [
        Row("test error, no augmentation", "—", pct(test["none"]), test["none"]),
        Row("train/test gap, no augmentation", "large (\"overfits badly\")", points(gap["none"]), gap["none"]),
        Row("test error, crops+flips", "—", pct(test["crops+flips"]), test["crops+flips"]),
        Row("train/test gap, crops+flips", "much smaller", points(gap["crops+flips"]), gap["crops+flips"]),
        Row("drop in the gap from crops+flips", "large", points(gap_gain), gap_gain),
        Row("drop in test error from crops+flips", "—", points(crop_gain), crop_gain),
        Row("test error, crops+flips+PCA colour", "—", pct(test["crops+flips+PCA"]), test["crops+flips+PCA"]),
        Row("drop in test error from PCA colour", "over 1 pt (top-1)", points(pca_gain), pca_gain),
    ]
    plots = [plot_arms(ctx.out / "augment.png", runs, "cifar_18pct on 24x24 patches, augmentation on / off")]
    notes = ["The colour noise is cuda-convnet2's: along each principal component of the training set's RGB values "
             "a shift of std 0.1 x that component's standard deviation (on CIFAR-10 10.6, 2.9 and 1.3 grey levels), "
             "the batch then scaled by 1/1.1.",
             f"{ctx.epochs} epochs on {ctx.train_images or 'all'} training images; training-set error measured "
             "on the centre patch of up to 10,000 of them."]
    return Outcome(rows, [v_pca, v_crop], plots,
                   {"test_error": {a: stats(x) for a, x in test.items()}, "train_error": {a: stats(x) for a, x in train.items()},
                    "gap": {a: stats(x) for a, x in gap.items()}, "crop_flip_gain": stats(crop_gain),
                    "crop_flip_gap_reduction": stats(gap_gain), "pca_gain": stats(pca_gain)}, notes)


# -- §4.1: ten-crop testing --------------------------------------------------------------------
@experiment(
    "ten-crop", title="Ten-patch testing (§4.1, §6)", section="§4.1, Table 1",
    claim="averaging the softmax over ten patches (four corners, centre and their reflections) gives 37.5% "
          "top-1 error where one centre patch gives 39.0%",
    data="cifar10", seeds=3, epochs=10, train_images=20000, minutes=3.1,
    pilot=(0.015, 0.0022, "the previous run, 3 seeds"),
)
def ten_crop(ctx: Context) -> Outcome:
    base = merge_configs(CIFAR, CROPS, {"translate": 0, "random_crop": True, "flip": True})
    runs = _paired(ctx, base, {"crops+flips": {}})["crops+flips"]
    centre = [ctx.measure(r, "centre_top1_error", lambda r=r: ctx.evaluate(r)) for r in runs]
    ten = [ctx.measure(r, "ten_crop_top1_error", lambda r=r: ctx.evaluate(r, ten_crop=True)) for r in runs]
    gain = _diff(centre, ten)
    v = judge(gain, 0.015, "the top-1 error drop from ten-patch testing", figure=points(gain), claimed="1.5 pts")
    rows = [Row("top-1 error, centre patch", "39.0%", pct(centre, 2), centre),
            Row("top-1 error, ten patches averaged", "37.5%", pct(ten, 2), ten),
            Row("drop", "1.5 pts", points(gain), gain)]
    plots = [plot_arms(ctx.out / "ten_crop.png", {"training": runs},
                       "cifar_18pct on 24x24 patches", final={"centre": centre, "ten patches": ten})]
    notes = [f"The same checkpoint (the last epoch) evaluated both ways on the test split; {ctx.epochs} epochs on "
             f"{ctx.train_images or 'all'} training images, random 24x24 patches of the 32x32 images and flips."]
    return Outcome(rows, [v], plots, {"centre": stats(centre), "ten_crop": stats(ten), "gain": stats(gain)}, notes)


# -- §3.2: two columns -------------------------------------------------------------------------
COLUMN_WIDTH_ONE = 53  # one column of 53 kernels in conv1/conv2: 169,420 parameters against two columns' 168,842


@experiment(
    "columns", title="Two columns against one of about as many parameters (§3.2)", section="§3.2",
    claim="the two-GPU net (two columns that meet only at certain layers) has 1.7% / 1.2% lower top-1 / "
          "top-5 error than a one-GPU net with half as many kernels in each convolutional layer, about as many "
          "parameters (its footnote)",
    data="cifar10", seeds=8, epochs=8, train_images=10000, minutes=15.0,
    pilot=(0.017, 0.031, "the previous run (unequal nets), 3 seeds"),
)
def columns(ctx: Context) -> Outcome:
    # two columns of 32 kernels in conv1 and conv2 that meet at conv3, against one column widened to 53
    # kernels so that the two nets have about as many parameters (0.3% apart), as the paper's footnote
    # made its pair: what differs is the grouping, not the capacity
    base = CIFAR
    one_name, two_name = f"one column ({COLUMN_WIDTH_ONE} kernels)", "two columns (2 x 32 kernels)"
    runs = _paired(ctx, base, {one_name: {"model_options": {"columns": 1, "width": COLUMN_WIDTH_ONE}},
                               two_name: {"model_options": {"columns": 2, "width": 32}}})
    one, two = ([r.test_error for r in runs[a]] for a in (one_name, two_name))
    gain = _diff(one, two)
    sec = {a: stats([r.seconds for r in rs])["mean"] for a, rs in runs.items()}
    v = judge(gain, 0.017, "the top-1 error drop from two columns", figure=points(gain), claimed="1.7 pts")
    params = {a["name"]: a["parameters"] for a in ctx.reported_arms()}
    rows = [Row(f"top-1 error, {one_name}", "—", pct(one), one),
            Row(f"top-1 error, {two_name}", "—", pct(two), two),
            Row("drop in top-1 error", "1.7 pts", points(gain), gain),
            Row("parameters, one / two columns", "about equal",
                f"{params.get(one_name, 0):,} / {params.get(two_name, 0):,}"),
            Row("training time per run, one / two columns", "—", f"{sec[one_name]:.0f} s / {sec[two_name]:.0f} s")]
    plots = [plot_arms(ctx.out / "columns.png", runs, "cifar_18pct (no LRN), one wide column vs two grouped columns")]
    notes = ["Both columns live on one device here (grouped convolutions); the paper split them over two GPUs.",
             f"{ctx.epochs} epochs on {ctx.train_images or 'all'} training images, 2-pixel shifts and flips. Top-5 "
             "error is not compared: with CIFAR-10's ten classes it is near zero for both."]
    return Outcome(rows, [v], plots, {"test_error": {"one": stats(one), "two": stats(two)},
                                      "gain": stats(gain), "seconds": sec}, notes)


# -- LeNet-5: the 1998 network, its parts, and its modern simplification ------------------------
LENET: dict[str, Any] = dict(
    model="lenet5", batch_size=64, lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.0, schedule="cosine",
    warmup_epochs=1.0, image_size=28, pad=2, random_crop=False, translate=0, flip=False, normalize="lecun",
    val_split=0.1,
)
LENET_PARTS = {  # each changes one part of the 1998 network
    "full C3": {"c3": "full"},
    "max pooling": {"subsampling": "max"},
    "linear output": {"output": "linear"},
}


@experiment(
    "lenet5", title="LeNet-5 (1998): its error, its parts, its modern simplification",
    section="the LeNet-5 that precedes it",
    claim="LeNet-5 with its sparse C3 table, scaled tanh, trainable subsampling and RBF output reaches 0.95% "
          "MNIST test error without distortions (0.8% with them)",
    data="mnist", seeds=3, epochs=10, minutes=21.0,
)
def lenet5(ctx: Context) -> Outcome:
    arms = {"1998": {"model_options": {"variant": "original"}},
            **{f"1998, {part}": {"model_options": {"variant": "original", **o}} for part, o in LENET_PARTS.items()},
            "modern": {"model_options": {"variant": "modern"}}}
    runs = _paired(ctx, LENET, arms)
    err = {a: [r.test_error for r in rs] for a, rs in runs.items()}
    old = err["1998"]
    v = judge_level(old, 0.0095, "LeNet-5 (1998) without distortions", figure=pct(old, 2), claimed="0.95%")
    parts = [measured(_diff(err[a], old), f"{a.removeprefix('1998, ')} instead of the 1998 part: error change",
                      figure=points(_diff(err[a], old))) for a in err if a != "1998"]
    rows = [Row("test error, LeNet-5 (1998), no distortions", "0.95%", pct(old, 2), old)]
    rows += [Row(f"test error, {a}", "—", pct(err[a], 2), err[a]) for a in err if a != "1998"]
    rows += [Row(f"{a} minus 1998", "—", points(_diff(err[a], old)), _diff(err[a], old)) for a in err if a != "1998"]
    plots = [plot_arms(ctx.out / "lenet5.png", runs, "LeNet-5 on MNIST: 1998, one part changed, modern")]
    notes = ["The lenet5_mnist recipe's settings without distortions (no shifts), so the paper's figure to compare "
             f"is its no-distortion 0.95%: the paper's input range (background -0.1, ink 1.175), {ctx.epochs} epochs "
             "(the paper: 20 passes) of SGD with Nesterov momentum, one epoch of warm-up and a cosine schedule "
             "instead of the paper's stochastic diagonal Levenberg-Marquardt; 6,000 training images held out for "
             "the per-epoch evaluation.",
             "The parts: each row changes one part of the 1998 network (C3's connection table, the trainable "
             "subsampling, the RBF output); the paper gives no figure for them, so they are measured, not judged."]
    return Outcome(rows, [v, *parts], plots, {"test_error": {a: stats(x) for a, x in err.items()}}, notes)


# -- §5: weight decay lowers the training error ----------------------------------------------
@experiment(
    "weight-decay", title="Weight decay lowers the training error (§5)", section="§5",
    claim="this small amount of weight decay (0.0005) is important for the model to learn: it is not merely a "
          "regularizer, it reduces the model's training error",
    data="cifar10", seeds=5, epochs=10, train_images=10000, minutes=8.5,
)
def weight_decay(ctx: Context) -> Outcome:
    runs = _paired(ctx, CIFAR, {"no weight decay": {"weight_decay": 0.0}, "weight decay 5e-4": {"weight_decay": 5e-4}})
    test, train, _ = _errors_and_gaps(ctx, runs)
    gain = _diff(train["no weight decay"], train["weight decay 5e-4"])
    v = judge(gain, None, "the training-set error drop from weight decay", figure=points(gain),
              claimed="lower training error")
    rows = [Row("training-set error without / with weight decay", "lower with",
                f"{pct(train['no weight decay'])} / {pct(train['weight decay 5e-4'])}",
                train["no weight decay"] + train["weight decay 5e-4"]),
            Row("drop in training-set error", "positive", points(gain), gain),
            Row("test error without / with", "—", f"{pct(test['no weight decay'])} / {pct(test['weight decay 5e-4'])}",
                test["no weight decay"] + test["weight decay 5e-4"])]
    plots = [plot_arms(ctx.out / "weight_decay.png", runs, "cifar_18pct with / without weight decay 5e-4")]
    notes = [f"Training-set error: the final weights on up to 10,000 of the images they were trained on, without "
             f"augmentation. {ctx.epochs} epochs on {ctx.train_images or 'all'} training images, 2-pixel shifts and "
             "flips, the common CIFAR settings otherwise."]
    return Outcome(rows, [v], plots, {"train_error": {a: stats(x) for a, x in train.items()},
                                      "test_error": {a: stats(x) for a, x in test.items()}, "gain": stats(gain)}, notes)


# -- §5: biases of 1 speed up early learning ---------------------------------------------------
@experiment(
    "bias-one", title="Biases of 1 speed up early learning (§5)", section="§5",
    claim="initialising the neuron biases of the hidden layers to the constant 1 accelerates the early stages "
          "of learning by providing the ReLUs with positive inputs",
    data="cifar10", seeds=5, epochs=3, train_images=10000, minutes=2.7,
)
def bias_one(ctx: Context) -> Outcome:
    # cuda-convnet's Gaussian initialisation (biases 0), against the same with conv2's and conv3's biases 1;
    # lr 0.01 with classical momentum, a constant rate: the early epochs as the paper ran them
    base = merge_configs(CIFAR, {"lr": 0.01, "nesterov": False, "schedule": "constant",
                                 "model_options": {"init": "cuda-convnet"}})
    runs = _paired(ctx, base, {"biases 0": {"model_options": {"hidden_bias": 0.0}},
                               "biases 1": {"model_options": {"hidden_bias": 1.0}}})
    first = {a: [float(r.metrics[0]["train_top1_error"]) for r in rs] for a, rs in runs.items()}
    gain = _diff(first["biases 0"], first["biases 1"])
    v = judge(gain, None, "the drop in first-epoch training error from biases of 1", figure=points(gain),
              claimed="faster early learning")
    last = {a: [float(r.final["train_top1_error"]) for r in rs] for a, rs in runs.items()}
    rows = [Row("training error over the first epoch, biases 0 / 1", "lower with 1",
                f"{pct(first['biases 0'])} / {pct(first['biases 1'])}", first["biases 0"] + first["biases 1"]),
            Row("drop", "positive", points(gain), gain),
            Row(f"training error over epoch {ctx.epochs}, biases 0 / 1", "—",
                f"{pct(last['biases 0'])} / {pct(last['biases 1'])}", last["biases 0"] + last["biases 1"])]
    plots = [plot_arms(ctx.out / "bias_one.png", runs, "cifar_18pct, hidden biases 0 vs 1")]
    notes = ["cifar_18pct (no LRN) with cuda-convnet's initialisation (weights N(0, 1e-4) in conv1, N(0, 0.01) after); "
             "the hidden layers after the first (conv2, conv3) get biases 1, as AlexNet's conv2, conv4, conv5 and "
             f"hidden FC layers did. Training error: the running error over an epoch. {ctx.epochs} epochs on "
             f"{ctx.train_images or 'all'} training images, lr 0.01, classical momentum 0.9."]
    return Outcome(rows, [v], plots, {"first_epoch_train_error": {a: stats(x) for a, x in first.items()},
                                      "gain": stats(gain)}, notes)
