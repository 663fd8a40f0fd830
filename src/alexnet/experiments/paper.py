"""The paper's claims as experiments (PAPER.md, "The paper's ingredients"), each a short function
over the library's training API. They run on CIFAR-10 (or MNIST) at 32x32 on a CPU in minutes, so
they test each ingredient on the small networks the paper itself used for its CIFAR-10 claims
(cuda-convnet's layers-18pct / 80sec), not on ImageNet at 224x224; the reports say so where it
matters.

Common to the CIFAR-10 experiments unless an experiment says otherwise: SGD with Nesterov momentum
0.9, batch 128, learning rate 0.05 decayed linearly to zero, weight decay 5e-4, per-channel
standardised input, PyTorch's default initialisation, and for the paired arms of one seed the same
training subset, initial seed and data order.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from .base import (EXPERIMENTS, Context, Outcome, Row, epochs_to_reach, experiment, fmt_test, judge_gain,
                   merge_configs, paired_t_test, pct, points, seconds_to_reach, spread, stats)
from .plots import plot_arms, plot_lr_search, plot_training_error

__all__ = ["EXPERIMENTS"]  # the registry, filled by the @experiment functions below

CIFAR: dict[str, Any] = dict(
    model="cifar_18pct", batch_size=128, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4,
    schedule="linear", warmup_epochs=0.0, random_crop=True, translate=2, flip=True, normalize="meanstd",
    model_options={"init": "torch", "lrn": "none"},
)
NO_AUGMENTATION = dict(random_crop=False, translate=0, flip=False)


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


LR_SEARCH_EXTEND = 3  # how far the learning-rate grid may grow past either end


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
    stopping at a rate that diverges). Returns every rate tried and its score."""
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


# -- Figure 1: ReLU against tanh ------------------------------------------------------------------
# The two conditions, fixed before any run: the paper's (cuda-convnet's initialisation, the mean
# image subtracted from 0-255 pixels, as cuda-convnet fed its nets) first, the verdict's; and the
# easier one the project ran first (standardised inputs, PyTorch's fan-in initialisation), reported
# beside it.
RELU_CONDITIONS: dict[str, dict[str, Any]] = {
    "paper": {"normalize": "mean_image", "model_options": {"init": "cuda-convnet"},
              "candidates": (0.0002, 0.0005, 0.001, 0.002, 0.005)},
    "standardised": {"normalize": "meanstd", "model_options": {"init": "torch"},
                     "candidates": (0.005, 0.01, 0.02, 0.05, 0.1)},
}


@experiment(
    "relu-vs-tanh", title="ReLU trains faster than tanh (Figure 1)", section="§3.1, Figure 1",
    claim="a four-layer CNN with ReLUs reaches 25% training error on CIFAR-10 six times faster than the "
          "same network with tanh neurons (no regularisation; learning rates chosen separately for each)",
    data="cifar10", seeds=3, epochs=40, train_images=None, minutes=72.9,
)
def relu_vs_tanh(ctx: Context) -> Outcome:
    target = 0.25
    # the four-layer net (conv-conv-conv-fc), no regularisation of any kind, constant rate
    common = merge_configs(CIFAR, NO_AUGMENTATION, {"weight_decay": 0.0, "schedule": "constant", "eval_every": 1000})
    search_images = min(ctx.train_images or 10000, 10000)
    rows: list[Row] = []
    measured: dict[str, Any] = {"target_train_error": target}
    tests: list[dict[str, Any]] = []
    plots: list[str] = []
    verdicts: dict[str, tuple[str, str]] = {}
    edge_notes: list[str] = []
    for cond, setting in RELU_CONDITIONS.items():
        base = merge_configs(common, {k: v for k, v in setting.items() if k != "candidates"})
        candidates = setting["candidates"]
        # The learning-rate search: each activation trains for one epoch at each candidate rate on the
        # first seed; the rate with the lowest training error at the end of it is kept. A best rate at an
        # end of the grid is not a choice, so the grid grows that way (next 1-2-5 step) until the best is
        # inside it or the next rate diverges (at most LR_SEARCH_EXTEND more steps).
        search: dict[str, dict[float, float]] = {}
        for act in ("relu", "tanh"):
            def one_epoch(lr: float, act: str = act) -> float:
                try:
                    r = ctx.run(f"{cond}-search-{act}-lr{lr:g}", 0, base, lr=lr, epochs=1,
                                max_train_images=search_images, model_options={"activation": act})
                    return float(r.final["train_top1_error"])
                except Exception as e:  # a diverging rate is a result of the search, not a failure
                    if "not finite" not in str(e):
                        raise
                    return math.inf
            search[act] = search_learning_rate(one_epoch, candidates)
        best = {act: min(by_lr, key=lambda lr: (by_lr[lr], lr)) for act, by_lr in search.items()}
        ctx.runs = [r for r in ctx.runs if "-search-" not in r.arm]
        arms = {f"{cond}-{act}": {"lr": best[act], "target_train_error": target, "model_options": {"activation": act}}
                for act in ("relu", "tanh")}
        runs = _paired(ctx, base, arms)
        relu, tanh = runs[f"{cond}-relu"], runs[f"{cond}-tanh"]
        ep = {a: [epochs_to_reach([float(m["train_top1_error"]) for m in r.metrics], target) for r in rs]
              for a, rs in (("relu", relu), ("tanh", tanh))}
        # a run that never got there counts as reaching it after the last epoch: a bound in ReLU's favour
        # for tanh, against it for ReLU
        capped = {a: [v if not math.isnan(v) else float(ctx.epochs) for v in vs] for a, vs in ep.items()}
        sec = {a: [seconds_to_reach([float(m["train_top1_error"]) for m in r.metrics], r.train_seconds(), target)
                   for r in rs] for a, rs in (("relu", relu), ("tanh", tanh))}
        ratio = [t / r for t, r in zip(capped["tanh"], capped["relu"])]
        test = paired_t_test([t - r for t, r in zip(capped["tanh"], capped["relu"])])
        test.update(what=f"{cond}: tanh's epochs minus ReLU's", scale=1.0, unit=" epochs")
        tests.append(test)
        missed = {a: sum(math.isnan(v) for v in vs) for a, vs in ep.items()}
        s_ratio = stats(ratio)
        significant = test["n"] > 1 and test["p"] < 0.05
        # tanh runs that never got there make the ratio a lower bound ("at least"), ReLU's an upper one
        bound = "at least " if missed["tanh"] and not missed["relu"] else ""
        how = f"{bound}{s_ratio['mean']:.1f}x sooner"
        if significant and s_ratio["mean"] >= 3:
            verdicts[cond] = ("reproduced", f"ReLU gets there {how}, at least half the paper's 6x ({fmt_test(test)})")
        elif significant:
            verdicts[cond] = ("partly", f"ReLU gets there {how}: significant, but less than half the paper's 6x "
                                        f"({fmt_test(test)})")
        elif (test["mean"] or 0) > 0:
            verdicts[cond] = ("partly", f"ReLU gets there {how}, not significant at 5% ({fmt_test(test)})")
        else:
            verdicts[cond] = ("not reproduced", f"ReLU is not faster ({s_ratio['mean']:.2f}x, {fmt_test(test)})")

        def fmt(values: list[float], unit: str, a: str = "") -> str:
            n_missed = missed.get(a, 0)
            return spread(values, unit=unit, empty=f"not reached in {ctx.epochs} epochs") + \
                (f"; {n_missed} of {len(values)} runs never reached it (counted as {ctx.epochs})" if n_missed else "")

        label = "paper's setting" if cond == "paper" else "standardised inputs"
        rows += [
            Row(f"{label}: learning rate chosen (ReLU / tanh)", "tuned separately",
                f"{best['relu']:g} / {best['tanh']:g} (of {', '.join(f'{c:g}' for c in candidates)}"
                + "".join(f"; {a} also tried {', '.join(f'{lr:g}' for lr in sorted(set(search[a]) - set(candidates)))}"
                          for a in ("relu", "tanh") if set(search[a]) - set(candidates)) + ")"),
            Row(f"{label}: epochs to {target:.0%} training error, ReLU", "— (Figure 1)", fmt(ep["relu"], "", "relu"),
                ep["relu"]),
            Row(f"{label}: epochs to {target:.0%} training error, tanh", "six times ReLU's",
                fmt(ep["tanh"], "", "tanh"), ep["tanh"]),
            Row(f"{label}: seconds to get there, ReLU / tanh", "—", f"{fmt(sec['relu'], ' s')} / {fmt(sec['tanh'], ' s')}",
                sec["relu"] + sec["tanh"]),
            Row(f"{label}: speed-up in epochs (tanh / ReLU)", "6x", fmt(ratio, "x"), ratio),
        ]
        for a in ("relu", "tanh"):
            tried = sorted(search[a])
            if len(tried) > 1 and best[a] in (tried[0], tried[-1]) and math.isfinite(search[a][best[a]]):
                end = "top" if best[a] == tried[-1] else "bottom"
                edge_notes.append(f"{label}: {a}'s best rate ({best[a]:g}) is still the {end} of the grown grid "
                                  f"(the search stops after {LR_SEARCH_EXTEND} steps): its speed may be underrated.")
        measured[cond] = {"epochs_to_target": {a: stats(v) for a, v in ep.items()},
                          "seconds_to_target": {a: stats(v) for a, v in sec.items()}, "ratio_epochs": stats(ratio),
                          "lr_search": {a: {f"{lr:g}": e for lr, e in d.items()} for a, d in search.items()},
                          "chosen_lr": best, "test": test}
        plots += [
            plot_training_error(ctx.out / f"figure1-{cond}.png", {"ReLU": relu, "tanh": tanh}, target,
                                f"Figure 1 ({label}): four-layer CNN on CIFAR-10, ReLU (solid) vs tanh (dashed)",
                                {"tanh": "--"}),
            plot_lr_search(ctx.out / f"lr_search-{cond}.png", search,
                           f"learning-rate search ({label}): 1 epoch on {search_images} images"),
        ]
    verdict, reason = verdicts["paper"]
    reason = f"in the paper's setting, {reason}; with standardised inputs: {verdicts['standardised'][1]}"
    notes = [f"Runs stop once their training error reaches {target:.0%} (at most {ctx.epochs} epochs); the training "
             "error is the running error over each epoch, as cuda-convnet reported it.",
             "Network: cuda-convnet's layers-18pct without response normalisation (conv-conv-conv-fc), no weight "
             "decay, no augmentation, no dropout, constant learning rate, momentum 0.9.",
             "The paper's setting (the verdict): cuda-convnet's initialisation (conv1 N(0, 1e-4), the others "
             "N(0, 0.01)) and the mean image subtracted from 0-255 pixels, as cuda-convnet fed its nets. The second "
             "setting (standardised inputs, PyTorch's fan-in initialisation) keeps tanh units out of saturation.",
             "Both settings and their learning-rate candidates were fixed before any run. The search grows its "
             "grid past an end while the best rate sits there (the 1-2-5 series, up to "
             f"{LR_SEARCH_EXTEND} steps, stopping at a rate that diverges): added after the first published run "
             "had chosen the top of the paper setting's grid (0.005) for both activations, and fixed before this "
             "one.",
             f"Up to {ctx.epochs} epochs per run (the default 40 can tell a ratio of 6x: ReLU needs about 6). A "
             "run that never reaches the target counts as reaching it after the last epoch, which makes the "
             "ratio, and the t-test on the epochs, a lower bound when tanh misses.", *edge_notes]
    return Outcome(rows, verdict, reason, plots, measured, notes, tests)


# -- §3.3: local response normalisation --------------------------------------------------------
@experiment(
    "lrn", title="Local response normalisation lowers the error (§3.3)", section="§3.3",
    claim="on CIFAR-10 a four-layer CNN had 13% test error without normalisation and 11% with it",
    data="cifar10", seeds=3, epochs=6, train_images=10000, minutes=7.7,
)
def lrn(ctx: Context) -> Outcome:
    # Cross-map normalisation as the paper describes it: cuda-convnet's cmrnorm (9 maps, scale 0.001,
    # power 0.75) after pool1 and pool2 of cifar_18pct. Its effect depends on the activations' scale:
    # cuda-convnet fed raw 0-255 pixels, these nets standardised ones, about 64 times smaller. So
    # the constants are tried both as they are and at the pixel scale (``lrn_scale=64``, exactly
    # the normalisation those constants apply to 64-times-larger activations).
    base = CIFAR
    arms = {"none": {"model_options": {"lrn": "none"}},
            "cmrnorm": {"model_options": {"lrn": "cross"}},
            "cmrnorm, pixel scale": {"model_options": {"lrn": "cross", "lrn_scale": 64.0}}}
    runs = _paired(ctx, base, arms)
    test = {a: [r.test_error for r in rs] for a, rs in runs.items()}
    gain = {a: [x - y for x, y in zip(test["none"], test[a])] for a in ("cmrnorm", "cmrnorm, pixel scale")}
    # The verdict's arm was fixed before the runs: at pixel scale, where cuda-convnet's constants act
    # as they did on its 0-255 inputs. The other arm is reported with its own test.
    verdict, reason, t_main = judge_gain(gain["cmrnorm, pixel scale"], 0.02, "the error drop from LRN at pixel scale")
    _, _, t_other = judge_gain(gain["cmrnorm"], 0.02, "the error drop from LRN with the constants as they are")
    rows = [Row("test error without LRN", "13%", pct(test["none"]), test["none"]),
            Row("test error with LRN (cuda-convnet constants)", "11%", pct(test["cmrnorm"]), test["cmrnorm"]),
            Row("test error with LRN at pixel scale", "11%", pct(test["cmrnorm, pixel scale"]),
                test["cmrnorm, pixel scale"]),
            Row("drop in test error, as is / pixel scale", "2 pts",
                f"{points(gain['cmrnorm'])} / {points(gain['cmrnorm, pixel scale'])}",
                gain["cmrnorm"] + gain["cmrnorm, pixel scale"])]
    plots = [plot_arms(ctx.out / "lrn.png", runs, "cifar_18pct with / without cross-map LRN")]
    notes = ["The paper's 13%/11% come from cuda-convnet's layers-conv-local nets (locally connected layers, "
             "24x24 crops) trained far longer; here cifar_18pct (3 conv + 1 fc) with cmrnorm after pool1 and pool2, "
             f"{ctx.epochs} epochs on {ctx.train_images or 'all'} training images, 2-pixel shifts and flips.",
             "On standardised inputs the constants as they are barely change the activations (1 + 0.001/9 times "
             "a sum of squares of order 1); at pixel scale they divide them by about 2-3."]
    notes.append("The arm the verdict rests on (pixel scale) was chosen before the runs; both are reported.")
    return Outcome(rows, verdict, reason, plots,
                   {"test_error": {a: stats(v) for a, v in test.items()}, "gain": {a: stats(v) for a, v in gain.items()}},
                   notes, [t_main, t_other])


# -- §3.4: overlapping pooling ---------------------------------------------------------------
@experiment(
    "overlap-pool", title="Overlapping pooling (§3.4)", section="§3.4",
    claim="pooling with z=3, s=2 instead of z=2, s=2 lowers top-1 / top-5 error by 0.4% / 0.3%, and the "
          "network is slightly harder to overfit",
    data="cifar10", seeds=3, epochs=10, train_images=10000, minutes=3.7,
)
def overlap_pool(ctx: Context) -> Outcome:
    # no augmentation, so that overfitting (the train/test gap) shows within a few epochs
    base = merge_configs(CIFAR, NO_AUGMENTATION)
    runs = _paired(ctx, base, {"z=3, s=2": {"model_options": {"pool": "overlap"}},
                               "z=2, s=2": {"model_options": {"pool": "non-overlap"}}})
    test, train, gap = _errors_and_gaps(ctx, runs)
    gain = [b - a for a, b in zip(test["z=3, s=2"], test["z=2, s=2"])]
    gap_gain = [b - a for a, b in zip(gap["z=3, s=2"], gap["z=2, s=2"])]
    verdict, reason, t_gain = judge_gain(gain, 0.004, "the error drop from overlapping")
    _, _, t_gap = judge_gain(gap_gain, None, "the drop in the train/test gap from overlapping")
    rows = [
        Row("test error, z=2 s=2", "—", pct(test["z=2, s=2"]), test["z=2, s=2"]),
        Row("test error, z=3 s=2", "—", pct(test["z=3, s=2"]), test["z=3, s=2"]),
        Row("train/test gap, z=2 s=2", "—", points(gap["z=2, s=2"]), gap["z=2, s=2"]),
        Row("train/test gap, z=3 s=2", "smaller (\"slightly harder to overfit\")", points(gap["z=3, s=2"]),
            gap["z=3, s=2"]),
        Row("drop in test error (top-1)", "0.4 pts", points(gain), gain),
    ]
    plots = [plot_arms(ctx.out / "overlap_pool.png", runs, "cifar_18pct, overlapping vs adjacent pooling")]
    gap_word = "smaller" if stats(gap_gain)["mean"] > 0 else "not smaller"
    notes = [f"With overlapping pools the train/test gap is {gap_word}: {points(gap_gain)} (z=2 minus z=3).",
             "Training error is measured after training on up to 10,000 of the training images with the "
             "evaluation transform (no augmentation), test error on the test set. No augmentation, "
             f"{ctx.epochs} epochs on {ctx.train_images or 'all'} training images."]
    return Outcome(rows, verdict, reason, plots,
                   {"test_error": {a: stats(v) for a, v in test.items()}, "train_error": {a: stats(v) for a, v in train.items()},
                    "gap": {a: stats(v) for a, v in gap.items()}, "gain": stats(gain), "gap_reduction": stats(gap_gain)},
                   notes, [t_gain, t_gap])


# -- §4.2: dropout -----------------------------------------------------------------------------
@experiment(
    "dropout", title="Dropout removes overfitting, at twice the iterations (§4.2)", section="§4.2",
    claim="without dropout the network overfits substantially; dropout roughly doubles the number of "
          "iterations required to converge",
    data="cifar10", seeds=3, epochs=12, train_images=10000, minutes=7.2,
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
    best = {a: [min(float(m["val_top1_error"]) for m in r.metrics) for r in rs] for a, rs in runs.items()}
    # Iterations to converge, measured as the epochs to fit the training set to a given level: the
    # level the network without dropout reached after a third of the run; the ratio is how many
    # times longer the network with dropout takes to get there (more than about 3x if it never does).
    k = max(1, len(runs[off][0].metrics) // 3)
    level = [float(r.metrics[k - 1]["train_top1_error"]) for r in runs[off]]
    reach = [epochs_to_reach([float(m["train_top1_error"]) for m in r.metrics], lv) for r, lv in zip(runs[on], level)]
    ratio = [e / k for e in reach]
    censored = sum(math.isnan(x) for x in ratio)
    gap_gain = [a - b for a, b in zip(gap[off], gap[on])]
    v_gap, r_gap, t_gap = judge_gain(gap_gain, None, "the drop in the train/test gap")
    rs = stats(ratio)
    slow_ok = rs["n"] > 0 and 1.4 <= rs["mean"] <= 3.0 and not censored
    if v_gap == "reproduced" and slow_ok:
        verdict = "reproduced"
    elif v_gap != "not reproduced" or slow_ok:
        verdict = "partly"
    else:
        verdict = "not reproduced"
    slow = (f"{rs['mean']:.1f}x slower to fit" if rs["n"] else "no measurement of the slow-down") + \
        (f" ({censored} run(s) never got there)" if censored else "")
    reason = f"{r_gap}; with dropout the network is {slow} (paper: about 2x)"
    ratio_text = _num(ratio, "x", 2) if rs["n"] else "n/a"
    if censored:
        ratio_text += f"; {censored} run(s) more than {len(runs[on][0].metrics) / k:.1f}x"
    rows = [
        Row("train/test gap without dropout", "\"overfits substantially\"", points(gap[off]), gap[off]),
        Row("train/test gap with dropout", "much smaller", points(gap[on]), gap[on]),
        Row("drop in the gap", "—", points(gap_gain), gap_gain),
        Row("final test error without / with dropout", "—", f"{pct(test[off])} / {pct(test[on])}", test[off] + test[on]),
        Row("best test error without / with dropout", "—", f"{pct(best[off])} / {pct(best[on])}", best[off] + best[on]),
        Row(f"training error reached without dropout after {k} epochs", "—", pct(level), level),
        Row("epochs with dropout to reach it", "—", _num(reach), reach),
        Row("iterations to converge, with / without", "about 2x", ratio_text, ratio),
    ]
    plots = [plot_arms(ctx.out / "dropout.png", runs, "cifar_80sec (fc256), with / without dropout")]
    notes = [f"Convergence: the epochs the network with dropout needs to reach the training error (running, with "
             f"dropout active) that the one without reached after {k} of the {ctx.epochs} epochs.",
             f"No augmentation, constant learning rate 0.01, {ctx.epochs} epochs on "
             f"{ctx.train_images or 'all'} training images; training-set error measured without dropout."]
    if stats(test[on])["mean"] > stats(test[off])["mean"]:
        notes.append(f"After {ctx.epochs} epochs the network with dropout is still behind in test error: it needs "
                     "more iterations, the claim's second half; a longer run (--epochs) lets it catch up.")
    return Outcome(rows, verdict, reason, plots,
                   {"test_error": {a: stats(v) for a, v in test.items()}, "best_test_error": {a: stats(v) for a, v in best.items()},
                    "train_error": {a: stats(v) for a, v in train.items()}, "gap": {a: stats(v) for a, v in gap.items()},
                    "gap_reduction": stats(gap_gain), "fit_level": stats(level), "fit_epochs_without": k,
                    "fit_epochs_with": stats(reach), "slowdown": stats(ratio)}, notes, [t_gap])


# -- §4.1: crops, flips and PCA colour noise ---------------------------------------------------
CROPS = dict(image_size=32, crop_size=24, model_options={"input_size": 24})  # 24 of 32, like 224 of 256


@experiment(
    "augment", title="Data augmentation: crops and flips, PCA colour noise (§4.1)", section="§4.1",
    claim="without random crops and flips the network overfits badly; the PCA colour noise lowers top-1 "
          "error by over 1%",
    data="cifar10", seeds=3, epochs=10, train_images=10000, minutes=4.6,
)
def augment(ctx: Context) -> Outcome:
    # the paper's scheme scaled down: random 24x24 patches of the 32x32 images (224 of 256) and their
    # reflections; the unaugmented arm trains on the centre 24x24 patch; all test on the centre patch
    base = merge_configs(CIFAR, CROPS, {"translate": 0})
    runs = _paired(ctx, base, {
        "none": {"random_crop": False, "flip": False},
        "crops+flips": {"random_crop": True, "flip": True},
        "crops+flips+PCA": {"random_crop": True, "flip": True, "pca_lighting": 0.1},
    })
    test, train, gap = _errors_and_gaps(ctx, runs)
    crop_gain = [a - b for a, b in zip(test["none"], test["crops+flips"])]
    gap_gain = [a - b for a, b in zip(gap["none"], gap["crops+flips"])]
    pca_gain = [a - b for a, b in zip(test["crops+flips"], test["crops+flips+PCA"])]
    # the claim for crops and flips is about overfitting, so it is judged on the train/test gap
    v1, r1, t1 = judge_gain(gap_gain, None, "the drop in the train/test gap from crops and flips")
    v2, r2, t2 = judge_gain(pca_gain, 0.01, "the error drop from PCA colour noise")
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
    order = {"reproduced": 2, "partly": 1, "not reproduced": 0}
    verdict = min(v1, v2, key=order.get)  # type: ignore[arg-type]
    if v1 != v2 and verdict == "not reproduced":
        verdict = "partly"
    reason = f"crops and flips: {v1} ({r1}); PCA colour: {v2} ({r2})"
    plots = [plot_arms(ctx.out / "augment.png", runs, "cifar_18pct on 24x24 patches, augmentation on / off")]
    notes = ["The paper's colour noise targets ImageNet's illumination changes; CIFAR-10's 32x32 thumbnails "
             "vary less in that way, and a short run has little overfitting left for it to remove.",
             "Crops and flips make the training task harder: they pay off in test error only once the network "
             "without them overfits more than it does here." if stats(crop_gain)["mean"] < 0 else
             "Crops and flips lower the test error as well as the gap.",
             f"{ctx.epochs} epochs on {ctx.train_images or 'all'} training images; training-set error measured "
             "on the centre patch of up to 10,000 of them."]
    return Outcome(rows, verdict, reason, plots,
                   {"test_error": {a: stats(v) for a, v in test.items()}, "train_error": {a: stats(v) for a, v in train.items()},
                    "gap": {a: stats(v) for a, v in gap.items()}, "crop_flip_gain": stats(crop_gain),
                    "crop_flip_gap_reduction": stats(gap_gain), "pca_gain": stats(pca_gain)}, notes, [t1, t2])


# -- §4.1: ten-crop testing --------------------------------------------------------------------
@experiment(
    "ten-crop", title="Ten-patch testing (§4.1, §6)", section="§4.1, Table 1",
    claim="averaging the softmax over ten patches (four corners, centre and their reflections) gives 37.5% "
          "top-1 error where one centre patch gives 39.0%",
    data="cifar10", seeds=3, epochs=10, train_images=20000, minutes=8.2,
)
def ten_crop(ctx: Context) -> Outcome:
    base = merge_configs(CIFAR, CROPS, {"translate": 0, "random_crop": True, "flip": True})
    runs = _paired(ctx, base, {"crops+flips": {}})["crops+flips"]
    centre = [ctx.measure(r, "centre_top1_error", lambda r=r: ctx.evaluate(r)) for r in runs]
    ten = [ctx.measure(r, "ten_crop_top1_error", lambda r=r: ctx.evaluate(r, ten_crop=True)) for r in runs]
    gain = [c - t for c, t in zip(centre, ten)]
    verdict, reason, t_gain = judge_gain(gain, 0.015, "the error drop from ten-patch testing")
    rows = [Row("top-1 error, centre patch", "39.0%", pct(centre, 2), centre),
            Row("top-1 error, ten patches averaged", "37.5%", pct(ten, 2), ten),
            Row("drop", "1.5 pts", points(gain), gain)]
    plots = [plot_arms(ctx.out / "ten_crop.png", {"training": runs},
                       "cifar_18pct on 24x24 patches", final={"centre": centre, "ten patches": ten})]
    notes = [f"The same checkpoint (the last epoch) evaluated both ways on the test set; {ctx.epochs} epochs on "
             f"{ctx.train_images or 'all'} training images, random 24x24 patches of the 32x32 images and flips."]
    return Outcome(rows, verdict, reason, plots,
                   {"centre": stats(centre), "ten_crop": stats(ten), "gain": stats(gain)}, notes, [t_gain])


# -- §3.2: two columns -------------------------------------------------------------------------
@experiment(
    "columns", title="Two columns against one with half the kernels (§3.2)", section="§3.2",
    claim="the two-GPU net (two columns that meet only at certain layers) has 1.7% / 1.2% lower top-1 / "
          "top-5 error than a net with half as many kernels in each convolutional layer trained on one GPU",
    data="cifar10", seeds=3, epochs=8, train_images=10000, minutes=5.4,
)
def columns(ctx: Context) -> Outcome:
    # two columns: conv1 and conv2 doubled into two groups that meet at conv3 (whose size, like the
    # paper's last conv layer and the FC layers, is not halved); one column: the config's 32 kernels
    base = CIFAR
    runs = _paired(ctx, base, {"one column": {"model_options": {"columns": 1}},
                               "two columns": {"model_options": {"columns": 2}}})
    one, two = ([r.test_error for r in runs[a]] for a in ("one column", "two columns"))
    gain = [a - b for a, b in zip(one, two)]
    sec = {a: stats([r.seconds for r in rs])["mean"] for a, rs in runs.items()}
    verdict, reason, t_gain = judge_gain(gain, 0.017, "the error drop from two columns")
    rows = [Row("top-1 error, one column (half the kernels)", "—", pct(one), one),
            Row("top-1 error, two columns", "—", pct(two), two),
            Row("drop in top-1 error", "1.7 pts", points(gain), gain),
            Row("training time per run, one / two columns", "—", f"{sec['one column']:.0f} s / {sec['two columns']:.0f} s")]
    plots = [plot_arms(ctx.out / "columns.png", runs, "cifar_18pct (no LRN), one column vs two grouped columns")]
    notes = ["Both columns live on one device here (grouped convolutions); the paper split them over two GPUs. "
             "The two-column net has twice the conv1/conv2 kernels, which is what the paper compared too.",
             f"{ctx.epochs} epochs on {ctx.train_images or 'all'} training images, 2-pixel shifts and flips."]
    return Outcome(rows, verdict, reason, plots, {"test_error": {"one": stats(one), "two": stats(two)},
                                                  "gain": stats(gain), "seconds": sec}, notes, [t_gain])


# -- LeNet-5: the 1998 network against its modern simplification -------------------------------
LENET: dict[str, Any] = dict(
    model="lenet5", batch_size=64, lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.0, schedule="cosine",
    warmup_epochs=1.0, image_size=28, pad=2, random_crop=True, translate=2, flip=False, normalize="meanstd",
)


@experiment(
    "lenet5", title="LeNet-5 (1998) against its modern simplification", section="the LeNet-5 that precedes it",
    claim="LeNet-5 with its sparse C3 table, scaled tanh, trainable subsampling and RBF output reaches about 0.95% "
          "MNIST test error (0.8% with distortions); the modern version (ReLU, max pooling, full C3, linear "
          "softmax output) is the form later networks took",
    data="mnist", seeds=3, epochs=5, minutes=4.2,
)
def lenet5(ctx: Context) -> Outcome:
    runs = _paired(ctx, LENET, {"1998": {"model_options": {"variant": "original"}},
                                "modern": {"model_options": {"variant": "modern"}}})
    old, new = ([r.test_error for r in runs[a]] for a in ("1998", "modern"))
    diff = [a - b for a, b in zip(old, new)]
    s_old = stats(old)
    # against the paper's 0.95%: worse by a significant margin (one-sided t-test of error - 0.95% > 0)
    # is "not reproduced"; at or below it "reproduced"; above it within the noise "partly"
    worse = paired_t_test(old, null=0.0095)
    worse.update(what="LeNet-5 (1998) error minus the paper's 0.95% (worse than the paper)")
    better = paired_t_test([-d for d in diff])
    better.update(what="modern minus 1998 error (the modern one worse)")
    if s_old["mean"] <= 0.0095:
        verdict = "reproduced"
    elif worse["n"] > 1 and worse["p"] < 0.05:
        verdict = "not reproduced"
    else:
        verdict = "partly"
    reason = (f"the 1998 network reaches {100 * s_old['mean']:.2f}% in {ctx.epochs} epochs (paper: 0.95% without "
              f"distortions, 0.8% with; above the paper's: {fmt_test(worse)}); the modern one differs by {points(diff)}")
    rows = [Row("test error, LeNet-5 (1998)", "0.95% (0.8% with distortions)", pct(old, 2), old),
            Row("test error, modern LeNet-5", "—", pct(new, 2), new),
            Row("1998 minus modern", "—", points(diff), diff)]
    plots = [plot_arms(ctx.out / "lenet5.png", runs, "LeNet-5 on MNIST, 1998 vs modern")]
    notes = ["The shipped lenet5_mnist recipe's settings, shorter: SGD with Nesterov momentum, one epoch of warm-up "
             "and a cosine schedule instead of the paper's stochastic diagonal Levenberg-Marquardt; random shifts of "
             "up to 2 pixels (a mild distortion)."]
    return Outcome(rows, verdict, reason, plots, {"test_error": {"1998": stats(old), "modern": stats(new)},
                                                  "difference": stats(diff)}, notes, [worse, better])
