"""The paper experiments in tiny configurations (generated data, a few steps), the report page and
the qualitative figures (kernels, nearest neighbours)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet import TrainConfig
from alexnet.cli import main
from alexnet.experiments import EXPERIMENTS, run_experiment
from alexnet.experiments.library import epochs_to_reach, merge_configs, seconds_to_reach, stats
from alexnet.experiments.stats import detectable, interval, paired_t_test, power, seeds_for, sign_test
from alexnet.experiments.verdicts import STATUSES, Precondition, judge, judge_level

TINY = dict(seeds=2, epochs=1, train_images=48, overrides={"batch_size": 16, "workers": 0}, pilot=False)
ARMS = {
    "relu-vs-tanh": 4,
    "lrn": 2,
    "overlap-pool": 2,
    "dropout": 2,
    "augment": 2,
    "ten-crop": 1,
    "columns": 2,
    "lenet5": 2,
    "weight-decay": 2,
    "bias-one": 2,
    "modern": 5,
}


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MNIST-like folder: 28x28 grey images, three classes told apart by a bar's height."""
    root = tmp_path_factory.mktemp("digits")
    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("test", 8)):
        for c in range(3):
            d = root / split / str(c)
            d.mkdir(parents=True)
            for i in range(n):
                a = rng.integers(0, 40, (28, 28)).astype(np.uint8)
                a[4 + 7 * c : 10 + 7 * c, 6:22] = 250
                Image.fromarray(a).save(d / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def experiment_results(
    tiny_folder: Path, digits_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, dict]]:
    root = tmp_path_factory.mktemp("experiments")
    out = {}
    for name, spec in EXPERIMENTS.items():
        data = str(digits_folder if spec.data == "mnist" else tiny_folder)
        out[name] = (root / name, run_experiment(name, data, root / name, progress=False, log=lambda s: None, **TINY))
    return out


def test_every_issue_experiment_is_registered() -> None:
    assert set(ARMS) <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", sorted(ARMS))
def test_experiment_writes_complete_results(name: str, experiment_results: dict) -> None:
    folder, result = experiment_results[name]
    on_disk = json.loads((folder / "result.json").read_text())
    assert on_disk["experiment"] == name == result["experiment"]
    for key in (
        "title",
        "section",
        "claim",
        "command",
        "table",
        "measured",
        "verdict",
        "plots",
        "runs",
        "seconds",
        "machine",
        "versions",
        "settings",
    ):
        assert on_disk[key] not in (None, "", [], {}), key
    assert on_disk["settings"]["seeds"] == [0, 1]
    assert on_disk["verdict"]["status"] in STATUSES
    assert on_disk["verdict"]["reason"] and on_disk["verdict"]["figure"]
    assert on_disk["verdict"]["claims"][0]["status"] == on_disk["verdict"]["status"]
    # every arm with its network, options and parameter count
    assert len(on_disk["arms"]) == ARMS[name]
    for arm in on_disk["arms"]:
        assert set(arm) == {"name", "model", "options", "parameters"} and arm["parameters"] > 1000
    assert on_disk["protocol"]["path"] == "docs/paper/protocol.md" and on_disk["protocol"]["version"] == 2
    assert len(on_disk["protocol"]["section_sha256"]) == 64
    prov = on_disk["provenance"]
    assert set(prov) >= {"commit", "clean", "training_code", "cpu_hours", "first_started", "last_finished"}
    assert prov["cpu_hours"] > 0
    assert on_disk["versions"]["torch"] == torch.__version__
    # every arm trained for every seed, each a complete run folder
    assert len(on_disk["runs"]) == 2 * ARMS[name]
    for run in on_disk["runs"]:
        assert 0.0 <= run["test_top1_error"] <= 1.0
        assert run["provenance"]["training_code"] == prov["training_code"] and run["provenance"]["cpu_seconds"] > 0
        assert run["provenance"]["started"] <= run["provenance"]["finished"]
        assert (folder / run["folder"] / "last.pt").is_file()
        assert (folder / run["folder"] / "run.json").is_file()
    for row in on_disk["table"]:
        assert row["quantity"] and row["paper"] and row["ours"]
    # the paper's figure is in the table, beside ours
    assert any(row["paper"] not in ("—",) for row in on_disk["table"])
    for plot in on_disk["plots"]:
        assert (folder / plot).stat().st_size > 5000
    report = (folder / "report.md").read_text()
    assert on_disk["title"] in report and on_disk["verdict"]["status"] in report
    assert all(f"]({p})" in report for p in on_disk["plots"])


def test_relu_vs_tanh_measures_the_figure_1_quantities(experiment_results: dict) -> None:
    folder, r = experiment_results["relu-vs-tanh"]
    m = r["measured"]
    for cond in ("paper", "standardised"):  # the paper's setting and the easier one, in one report
        assert set(m[cond]["chosen_lr"]) == {"relu", "tanh"}
        assert (folder / f"figure1-{cond}.png").is_file() and (folder / f"lr_search-{cond}.png").is_file()
    assert {"0.01", "0.02", "0.05", "0.1"} <= set(m["standardised"]["lr_search"]["relu"])
    assert [c["claim"].split(":")[0] for c in r["verdict"]["claims"]] == ["paper's setting", "standardised inputs"]
    assert m["target_train_error"] == 0.25
    for run in r["runs"]:  # the runs stop at the target: at most the epochs asked for
        assert run["epochs"] <= r["settings"]["epochs"]


def test_gap_experiments_measure_the_training_set(experiment_results: dict) -> None:
    _, r = experiment_results["dropout"]
    for run in r["runs"]:
        assert 0.0 <= run["train_eval_top1_error"] <= 1.0
    _, r = experiment_results["ten-crop"]
    for run in r["runs"]:
        assert 0.0 <= run["ten_crop_top1_error"] <= 1.0
        assert run["centre_top1_error"] == pytest.approx(run["test_top1_error"])


def test_the_ensemble_and_the_specialisation_are_measured(experiment_results: dict) -> None:
    """lrn's second claim averages its cross-map nets; columns' second reads the two-column nets' conv1."""
    _, r = experiment_results["lrn"]
    ens = r["measured"]["ensemble"]
    assert (
        ens["nets"] == 2
        and 0.0 <= ens["ensemble"] <= 1.0
        and ens["per_image_test"]["df"] == ens["per_image_test"]["n"] - 1
    )
    assert r["verdict"]["claims"][1]["claim"].startswith("the top-1 error drop from averaging 2 nets")
    _, r = experiment_results["columns"]
    spec = r["measured"]["specialisation"]
    assert len(spec) == 2 and all(0.0 < s["p"] <= 1.0 and len(s["column_means"]) == 2 for s in spec)
    assert r["verdict"]["claims"][1]["test"]["kind"] == "sign"


def test_colourfulness_tells_grey_kernels_from_coloured_ones() -> None:
    from alexnet.experiments.claims.columns import specialisation

    rng = np.random.default_rng(0)
    grey = np.repeat(rng.normal(size=(32, 1, 5, 5)), 3, axis=1)
    colour = rng.normal(size=(32, 3, 5, 5))
    w = np.concatenate([grey, colour])
    c = 1 - 3 * (w.mean(1) ** 2).sum((1, 2)) / (w**2).sum((1, 2, 3))
    assert np.allclose(c[:32], 0.0) and (c[32:] > 0.3).all()
    s = specialisation(c, seed=0)
    assert s["p"] < 0.01 and s["difference"] > 5 * s["null_median"]
    mixed = specialisation(rng.permutation(c), seed=0)  # the same kernels dealt at random: no columns
    assert mixed["p"] > 0.01


def test_rerun_reuses_finished_runs_and_adds_seeds(tiny_folder: Path, experiment_results: dict) -> None:
    folder, first = experiment_results["lrn"]
    logs: list[str] = []
    again = run_experiment("lrn", str(tiny_folder), folder, progress=False, log=logs.append, **{**TINY, "seeds": 3})
    reused = [s for s in logs if "reusing" in s]
    trained = [s for s in logs if s.startswith("[lrn] training")]
    assert len(reused) == 4 and len(trained) == 2  # seeds 0 and 1 kept, seed 2 trained for every arm
    assert [r["test_top1_error"] for r in again["runs"][:4]] == [r["test_top1_error"] for r in first["runs"]]


def test_an_interrupted_run_is_resumed_not_restarted(tiny_folder: Path, experiment_results: dict) -> None:
    folder, first = experiment_results["overlap-pool"]
    run = folder / first["runs"][0]["folder"]
    (run / "run.json").unlink()  # as if the process died after the run's last checkpoint
    logs: list[str] = []
    again = run_experiment("overlap-pool", str(tiny_folder), folder, progress=False, log=logs.append, **TINY)
    assert any("resuming" in s for s in logs) and not any(s.startswith("[overlap-pool] training") for s in logs)
    assert again["runs"][0]["test_top1_error"] == first["runs"][0]["test_top1_error"]
    assert (run / "run.json").is_file()


def test_report_gathers_folders_into_markdown_and_html(experiment_results: dict, tmp_path: Path) -> None:
    dirs = [experiment_results[n][0] for n in ("relu-vs-tanh", "ten-crop", "lenet5")]
    assert main(["report", *map(str, dirs), "--out", str(tmp_path / "paper.md")]) == 0
    md = (tmp_path / "paper.md").read_text()
    page = (tmp_path / "paper.html").read_text()
    for d in dirs:
        r = json.loads((d / "result.json").read_text())
        assert r["title"] in md and r["title"] in page
        for plot in r["plots"]:  # Markdown links resolve from the page's folder
            link = next(line for line in md.splitlines() if line.endswith(f"{plot})"))
            assert (tmp_path / link.split("](")[1][:-1]).resolve().is_file()
    assert page.count("data:image/png;base64,") == sum(
        len(json.loads((d / "result.json").read_text())["plots"]) for d in dirs
    )
    assert "| experiment | paper's claim | ours (the verdict's figure) | verdict | test |" in md
    assert "docs/paper/protocol.md" in md and "docs/paper/protocol.md" in page


def test_report_and_experiment_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "no result.json" in capsys.readouterr().err
    assert main(["experiment", "no-such-thing"]) == 2
    err = capsys.readouterr().err
    assert "not one of" in err and len(err.strip().splitlines()) == 1
    assert main(["experiment", "lrn", "--data", str(tmp_path / "missing"), "--seeds", "0"]) == 2
    assert "--seeds" in capsys.readouterr().err


def test_experiment_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["experiment", "list"]) == 0
    out = capsys.readouterr().out
    for name in ARMS:
        assert name in out


def test_experiment_cli_prints_the_table(tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "experiment",
        "ten-crop",
        "--data",
        str(tiny_folder),
        "--out",
        str(tmp_path / "tc"),
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--train-images",
        "30",
        "--quiet",
        "--no-pilot",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "top-1 error, ten patches averaged" in out and "verdict:" in out
    r = json.loads((tmp_path / "tc" / "result.json").read_text())
    assert r["command"].startswith("alexnet experiment ten-crop --data")


# -- statistics and verdicts ------------------------------------------------------------------------
def test_step_125_walks_the_1_2_5_series() -> None:
    from alexnet.experiments.claims.relu_vs_tanh import step_125

    assert [step_125(x, True) for x in (0.0002, 0.0005, 0.001, 0.005, 0.1)] == [0.0005, 0.001, 0.002, 0.01, 0.2]
    assert [step_125(x, False) for x in (0.0002, 0.001, 0.005, 0.01, 0.1)] == [0.0001, 0.0005, 0.002, 0.005, 0.05]


def test_learning_rate_search_grows_the_grid_until_the_best_is_inside() -> None:
    from alexnet.experiments.claims.relu_vs_tanh import search_learning_rate

    tried: list[float] = []

    def score(lr: float, best: float = 0.02) -> float:  # a valley at 0.02
        tried.append(lr)
        return abs(math.log(lr / best))

    got = search_learning_rate(score, (0.001, 0.002, 0.005))
    assert min(got, key=got.get) == 0.02 and max(got) == 0.05  # grown up to past the valley, then stopped
    assert min(got) == 0.001 and len(tried) == len(set(tried)) == 6
    # a rate that diverges ends the growth, the best stays the edge's
    got = search_learning_rate(lambda lr: math.inf if lr > 0.005 else -lr, (0.001, 0.002, 0.005))
    assert list(got) == [0.001, 0.002, 0.005, 0.01] and math.isinf(got[0.01])
    # a valley below the grid: grown downward, at most `extend` steps
    got = search_learning_rate(lambda lr: lr, (0.01, 0.02), extend=2)
    assert list(got) == [0.002, 0.005, 0.01, 0.02]
    # a best inside the grid: nothing added
    assert list(search_learning_rate(lambda lr: abs(lr - 0.02), (0.01, 0.02, 0.05))) == [0.01, 0.02, 0.05]


def test_epochs_to_reach_interpolates_between_epochs() -> None:
    assert epochs_to_reach([0.5, 0.3, 0.2], 0.25) == pytest.approx(2.5)
    assert epochs_to_reach([0.2, 0.1], 0.25) == 1.0
    assert math.isnan(epochs_to_reach([0.5, 0.4], 0.25))
    assert seconds_to_reach([0.5, 0.3, 0.2], [10.0, 20.0, 30.0], 0.25) == pytest.approx(25.0)


def test_every_arm_of_every_experiment_gets_the_options_it_declares(experiment_results: dict) -> None:
    """Option tables are merged key by key: an experiment that adds input_size=24 keeps the shared
    init and lrn (the shallow merge once lost them); each arm is the protocol's (version 2)."""
    for name, (folder, r) in experiment_results.items():
        for run in r["runs"]:
            cfg = json.loads((folder / run["folder"] / "run.json").read_text())["config"]
            opts = cfg["model_options"]
            if name == "lenet5":  # all 60,000 images, no selection
                assert opts["variant"] == "original" and cfg["normalize"] == "lecun" and cfg["val_split"] == 0.0
                distorted = run["arm"] == "1998, distortions"
                assert (cfg["affine_scale"] > 0) == distorted and cfg["random_crop"] == distorted
                continue
            assert cfg["val_split"] == 0.1, (name, run["arm"])  # selection never on the test split
            if name == "modern":  # the two shipped recipes, and the first with one ingredient each
                base = TrainConfig.from_recipe("cifar_80sec_cifar10").to_dict()
                want = TrainConfig.from_recipe("cifar_80sec_cifar10_modern").to_dict()
                if run["arm"] != "modern":
                    want = dict(base)
                    want.update(
                        {
                            "MixUp/CutMix": {"mixup_alpha": 0.2, "cutmix_alpha": 1.0},
                            "TrivialAugment": {"auto_augment": "ta_wide"},
                            "EMA": {"model_ema": True, "model_ema_steps": 4, "model_ema_decay": 0.9998},
                        }.get(run["arm"], {})
                    )
                ignored = {"data", "out", "seed", "epochs", "device", "max_train_images", "max_val_images"}
                ignored |= {"batch_size", "workers", "precision"}  # TINY's overrides; the runs' fp32
                differ = {k for k in want if k not in ignored and want[k] != cfg[k]}
                assert not differ and cfg["precision"] == "fp32", (run["arm"], differ)
                continue
            if name in ("relu-vs-tanh", "bias-one"):
                if name == "bias-one" or run["arm"].startswith("paper-"):
                    assert opts["init"] == "cuda-convnet" and cfg["normalize"] == "mean_image", run["arm"]
                assert not cfg["nesterov"] and cfg["schedule"] == "constant", run["arm"]  # classical momentum
                continue
            # the fast recipe's settings: warm-up, linear decay (dropout: constant), Nesterov, standardised
            assert opts["init"] == "torch" and cfg["warmup_epochs"] == 1.0 and cfg["nesterov"], (name, run["arm"])
            assert cfg["normalize"] == "meanstd" and cfg["schedule"] == ("constant" if name == "dropout" else "linear")
            assert opts["lrn"] == ("cross" if run["arm"] == "cross-map" else "none"), (name, run["arm"])
            if name == "lrn" and run["arm"] == "cross-map":
                assert opts["lrn_scale"] == 64.0
            if name == "overlap-pool":
                assert opts["pools"] == "max"
            if name in ("columns", "dropout"):
                assert cfg["model"] == "cifar_80sec" and opts["hidden"] == 1024
            if name == "columns":
                assert (opts["columns"], opts["width"]) in ((1, 32), (2, 32))
            if name in ("augment", "ten-crop"):
                assert opts["input_size"] == 24 and cfg["crop_size"] == 24 and cfg["random_crop"], (name, run["arm"])
            if name == "dropout":
                assert not cfg["random_crop"] and not cfg["flip"]


def test_merge_configs_merges_option_tables_key_by_key() -> None:
    a = {"lr": 0.1, "model_options": {"init": "torch", "lrn": "none"}}
    b = {"crop_size": 24, "model_options": {"input_size": 24}}
    c = {"lr": 0.2, "model_options": {"lrn": "cross"}}
    assert merge_configs(a, b, c) == {
        "lr": 0.2,
        "crop_size": 24,
        "model_options": {"init": "torch", "lrn": "cross", "input_size": 24},
    }
    assert a["model_options"] == {"init": "torch", "lrn": "none"}  # the inputs are not changed


def test_the_paired_t_test_is_scipys_with_its_interval() -> None:
    """t, df and p against the textbook formula and scipy's t distribution; the interval against
    mean +- t(0.975, df) x SE."""
    scipy_stats = pytest.importorskip("scipy.stats")
    x = [0.02, 0.04, 0.015, -0.003]
    got = paired_t_test(x)
    n, m, sd = len(x), float(np.mean(x)), float(np.std(x, ddof=1))
    t = m / (sd / n**0.5)
    assert got["t"] == pytest.approx(t) and got["df"] == 3 and got["p"] == pytest.approx(scipy_stats.t.sf(t, 3))
    half = scipy_stats.t.ppf(0.975, 3) * sd / n**0.5
    assert got["ci"] == pytest.approx([m - half, m + half]) and list(interval(x)) == pytest.approx(got["ci"])
    assert paired_t_test([0.01, 0.01])["p"] == 0.0 and paired_t_test([0.01])["p"] is None


def test_three_seeds_at_two_standard_errors_are_not_significant() -> None:
    """The dropout case of the old review: mean 2.50 pts, SE 0.90, n = 3 -> t = 2.78, p = 0.054: not
    significant, the test in the reason; with no size in the paper, nothing more to say."""
    gains = [0.025 - 0.009 * 3**0.5, 0.025, 0.025 + 0.009 * 3**0.5]
    v = judge(gains, None, "the gap's drop", figure="+2.50 pts")
    assert v.test["t"] == pytest.approx(2.78, abs=0.01) and v.test["df"] == 2 and 0.05 < v.test["p"] < 0.06
    assert v.status == "not significant" and "t = 2.78, df = 2, p = 0.054" in v.reason and "95% interval" in v.reason


def test_judge_follows_the_protocols_rules() -> None:
    assert judge([0.02, 0.021, 0.019], 0.02, "x", figure="f").status == "reproduced"
    small = judge([0.002, 0.0021, 0.0019], 0.02, "x", figure="f")  # real but a tenth of the paper's
    assert small.status == "reproduced in direction, size differs" and small.test["ratio_to_paper"] == pytest.approx(
        0.1
    )
    big = judge([0.06, 0.061, 0.059], 0.02, "x", figure="f")  # three times the paper's: said so, not "reproduced"
    assert big.status == "reproduced in direction, size differs" and "3.00x" in big.reason
    # the size band is symmetric on the log scale and narrow: 1/1.5x to 1.5x
    assert judge([0.029, 0.0291, 0.0289], 0.02, "x", figure="f").status == "reproduced"  # 1.45x
    assert judge([0.031, 0.0311, 0.0309], 0.02, "x", figure="f").status == "reproduced in direction, size differs"
    assert judge([0.0135, 0.0136, 0.0134], 0.02, "x", figure="f").status == "reproduced"  # 0.675x
    assert judge([0.0130, 0.0131, 0.0129], 0.02, "x", figure="f").status == "reproduced in direction, size differs"
    # not significant: an interval that holds both zero and the paper's size says the test was too small,
    assert judge([0.03, -0.02, 0.01], 0.02, "x", figure="f").status == "inconclusive: too small a test"
    # one that lies below the paper's size excludes it (the PCA case: upper bound +0.23 pts against +1 pt)
    pca = judge([0.001, -0.002, 0.0005, -0.001, 0.002, 0.0, -0.0005, 0.001], 0.01, "x", figure="f")
    assert pca.status == "not significant: excludes the paper's size" and pca.test["ci"][1] < 0.01
    assert judge([0.03, -0.02, 0.01], None, "x", figure="f").status == "not significant"  # no size to exclude
    assert judge([-0.01, -0.02, -0.011], 0.02, "x", figure="f").status == "contradicted"
    assert judge([0.05], 0.02, "x", figure="f").status == "inconclusive"  # one seed cannot tell
    # no number in the paper: significance is enough
    assert judge([0.002, 0.0021, 0.0019], None, "x", figure="f").status == "reproduced"
    # the substance first: arms that do not measure the claim make it confounded, whatever the p
    v = judge([0.02, 0.021, 0.019], 0.02, "x", figure="f", preconditions=[Precondition(False, "one arm underfit")])
    assert v.status == "inconclusive: confounded" and "one arm underfit" in v.reason
    # a ratio claim ("six times"): effects are log ratios, the interval shown as ratios
    six = judge([math.log(5.5), math.log(6.5), math.log(6.1)], 6.0, "x", figure="f", log=True)
    assert six.status == "reproduced" and "x, " in six.reason
    assert (
        judge([math.log(1.4), math.log(1.5), math.log(1.45)], 6.0, "x", figure="f", log=True).status
        == "reproduced in direction, size differs"
    )
    assert all(judge(e, p, "x", figure="f").status in STATUSES for e, p in (([0.1, 0.2], 0.1), ([-0.1, 0.1], None)))
    s = stats([0.1, 0.2, math.nan])
    assert s["n"] == 2 and s["mean"] == pytest.approx(0.15)


def test_a_censored_measurement_can_never_be_reproduced() -> None:
    """relu-vs-tanh's old flaw: tanh runs stopped at the cap make tanh's variance zero by construction
    and the t statistic huge. Whatever the bound says, a censored measurement is at best "in direction",
    and only when the censoring-aware sign test supports it."""
    huge = [math.log(40 / 5.9), math.log(40 / 5.8), math.log(40 / 5.85)]  # every tanh run censored at 40 epochs
    for n_seeds, status in ((3, "inconclusive"), (5, "reproduced in direction, size censored")):
        logs = (huge * 2)[:n_seeds]
        v = judge(logs, 6.0, "x", figure="f", log=True, censored=n_seeds, signs=[1] * n_seeds)
        assert v.status == status and v.test["kind"] == "sign" and v.test["ci"] is None
        assert v.test["p"] == pytest.approx(0.5**n_seeds)
    # some pairs the other way, some unknown (both censored): the sign test counts the ordered pairs only
    assert sign_test([1, 1, -1, 0, 1])["p"] == pytest.approx(5 / 16)
    v = judge([1.0, 1.0, 1.0, 1.0, 1.0], 6.0, "x", figure="f", log=True, censored=1, signs=[1, 1, 1, 1, 1])
    assert v.status != "reproduced"


def test_level_claims_against_a_tolerance() -> None:
    """LeNet-5's 0.95%: reproduced when significantly below 1.25 x 0.95%, contradicted when above."""
    assert judge_level([0.0100, 0.0102, 0.0098], 0.0095, "x", figure="f").status == "reproduced"
    assert judge_level([0.0140, 0.0150, 0.0145], 0.0095, "x", figure="f").status == "contradicted"
    wide = judge_level([0.0090, 0.0150, 0.0120], 0.0095, "x", figure="f")
    assert wide.status == "inconclusive: too small a test" and wide.test["ci"][0] < 0.011875 < wide.test["ci"][1]


def test_power_is_the_exact_noncentral_t() -> None:
    """The power against the exact power, simulated (400,000 draws of n normal differences, one-sided
    t-test at 5%): d = 1, n = 8: 0.815; d = 2, n = 4: 0.908. The inverse functions agree with it."""
    assert power(1.0, 1.0, 8) == pytest.approx(0.815, abs=0.005)
    assert power(2.0, 1.0, 4) == pytest.approx(0.908, abs=0.005)
    n = seeds_for(1.0, 1.0)
    assert power(1.0, 1.0, n) >= 0.8 > power(1.0, 1.0, n - 1)
    assert power(detectable(1.0, 8), 1.0, 8) == pytest.approx(0.8, abs=1e-3)


def test_the_pilot_takes_the_first_rate_every_arm_trains_at(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from alexnet.errors import UserError
    from alexnet.experiments import context, library

    trained: list[tuple[str, float]] = []

    def fake_run(self, arm, seed, cfg_base, *, report=True, **changes):  # type: ignore[no-untyped-def]
        lr = changes["lr"]
        trained.append((arm, lr))
        if lr == 0.05 and "b" in arm:
            raise UserError("loss is not finite at epoch 1/1, step 3: training diverged")
        err = 0.5 if lr == 0.02 else 0.2
        return library.Run(arm, seed, tmp_path, {}, [{"train_top1_error": err}], 1.0)

    monkeypatch.setattr(context.Context, "run", fake_run)
    ctx = context.Context(EXPERIMENTS["lrn"], "cifar10", tmp_path, seeds=2)
    check = lambda r: None if r.final["train_top1_error"] <= 0.35 else "underfits"  # noqa: E731
    assert ctx.choose_rate({}, {"a": {}, "b": {}}, (0.05, 0.02, 0.01, 0.005), check) == 0.01
    assert [lr for _, lr in trained] == [0.05, 0.05, 0.02, 0.02, 0.01, 0.01]  # stops at the first that works
    assert all(a.startswith("pilot-") for a, _ in trained) and ctx.runs == []  # discarded
    assert ctx.pilots[0]["tried"][0]["failures"] == ["b: diverged"]
    assert ctx.pilots[0]["tried"][1]["failures"] == ["a: underfits", "b: underfits"]
    with pytest.raises(UserError, match="no learning rate"):
        ctx.choose_rate({}, {"b": {}}, (0.05,), check)


def test_lenet5_verdict_can_say_contradicted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from alexnet.experiments import context, library
    from alexnet.experiments.claims import lenet5

    def fake_run(self, arm, seed, cfg_base, *, report=True, **changes):  # type: ignore[no-untyped-def]
        err = 0.0145 + 0.0005 * (seed - 1) if arm == lenet5.PLAIN else 0.0079 + 0.0001 * seed
        return library.Run(
            arm,
            seed,
            tmp_path,
            {},
            [
                {
                    "epoch": 1,
                    "val_top1_error": 0.01,
                    "test_top1_error": err,
                    "train_top1_error": 0.01,
                    "train_loss": 0.1,
                    "val_loss": 0.1,
                    "val_top5_error": 0.0,
                }
            ],
            1.0,
        )

    monkeypatch.setattr(context.Context, "run", fake_run)
    monkeypatch.setattr(lenet5, "plot_arms", lambda path, *a, **k: str(path.name))
    ctx = context.Context(EXPERIMENTS["lenet5"], "mnist", tmp_path, seeds=3)
    out = EXPERIMENTS["lenet5"].run(ctx)
    assert out.verdicts[0].status == "contradicted" and "p = " in out.verdicts[0].reason
    assert out.verdicts[0].figure == "1.45% ± 0.05 (3 seeds)"  # the test split's error
    assert out.verdicts[1].status == "reproduced"  # 0.80% with distortions, well below 1.25 x 0.8%
    assert out.verdicts[2].status == "measured"


def test_the_summary_row_shows_the_figure_its_verdict_rests_on(experiment_results: dict, tmp_path: Path) -> None:
    from alexnet.experiments.report import write_report

    dirs = [experiment_results[n][0] for n in sorted(experiment_results)]
    md, _ = write_report(dirs, tmp_path / "paper.md")
    text = md.read_text()
    for name, (folder, _) in experiment_results.items():
        r = json.loads((folder / "result.json").read_text())  # as written last (another test adds seeds)
        row = next(line for line in text.splitlines() if line.startswith(f"| [{name}]"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == r["verdict"]["figure"] == r["verdict"]["claims"][0]["figure"]
        assert cells[3] == f"**{r['verdict']['status']}**"


def _published() -> list[tuple[Path, dict, int]]:
    """Every published result: (file, result, the protocol version its folder says: docs/paper/NAME is
    the current version's, docs/paper/v1/NAME the first's)."""
    paper = Path(__file__).resolve().parents[1] / "docs" / "paper"
    out = [(f, json.loads(f.read_text()), 2) for f in sorted(paper.glob("*/result.json")) if f.parent.name != "v1"]
    out += [(f, json.loads(f.read_text()), 1) for f in sorted((paper / "v1").glob("*/result.json"))]
    return out


def test_published_results_come_after_the_protocol() -> None:
    """docs/paper: every result.json finished after the last commit of its protocol version that covers
    it (its own section or the common parts; an amendment of one experiment's section means rerunning
    that experiment only), and records its arms' parameter counts. The second version's results also
    carry their provenance: the code's commit from a clean tree, each run's start (after the protocol),
    finish and training code, and the section's text as the protocol has it now."""
    from alexnet.experiments import provenance

    root = Path(__file__).resolve().parents[1]
    assert (root / provenance.PROTOCOL).is_file()
    changes = provenance.protocol_changes(set(EXPERIMENTS), root)
    if not changes:
        pytest.skip("not a git checkout with the protocol committed (or a shallow clone)")
    results = _published()
    assert any(v == 1 for *_, v in results)  # the first version's results stay published, superseded
    text = (root / provenance.PROTOCOL).read_text()
    assert provenance.protocol_version_of(text) == 2
    for f, r, version in results:
        assert int(r["protocol"].get("version") or 1) == version, f
        covering = [c.when for c in changes if c.version == version and c.covers(r["experiment"])]
        finished = provenance.parse_time(r["finished"])
        assert covering and finished > max(covering), f"{f}: finished {finished}, before the protocol's {max(covering)}"
        assert all(a["parameters"] > 0 for a in r["arms"]) and r["arms"], f
        assert r["protocol"]["commit"], f
        assert "/work/" not in r["command"] and not r["command"].split("--out ")[-1].startswith("/"), f
        if version < 2:
            continue
        prov = r["provenance"]
        assert prov["commit"] and prov["clean"] is True and prov["training_code"], f
        assert r["protocol"]["section_sha256"] == provenance.sha256(provenance.section_text(text, r["experiment"])), f
        assert r["protocol"]["common_sha256"] == provenance.sha256(provenance.common_text(text, set(EXPERIMENTS))), f
        for run in r["runs"]:
            p = run["provenance"]
            assert provenance.parse_time(p["started"]) > max(covering), (f, run["folder"])
            assert provenance.parse_time(p["finished"]) <= finished and p["training_code"] == prov["training_code"]
            assert p["clean"] is True and p["cpu_seconds"] > 0, (f, run["folder"])


def test_a_protocol_amendment_covers_its_own_section_only() -> None:
    from alexnet.experiments.provenance import covered, protocol_version_of, section_owners, section_text

    lines = [
        "# P",
        "## Common",
        "text",
        "## Seeds",
        "| lrn | 2 |",
        "| columns | 1 |",
        "## The experiments",
        "### lrn (§3.3)",
        "- arms",
        "### columns (§3.2)",
        "- arms",
        "## Claims not tested",
        "- x",
    ]
    owner = section_owners(lines, {"lrn", "columns"})
    assert owner == [None, None, None, None, "lrn", "columns", None, "lrn", "lrn", "columns", "columns", None, None]
    assert covered("@@ -9,0 +10,2 @@\n+a\n+b\n", owner) == {"columns"}  # lines added at 10-11
    assert covered("@@ -10 +9,0 @@\n-x\n", owner) == {"lrn"}  # line 10 deleted: the gap after line 9
    assert covered("@@ -3 +3 @@\n-x\n+y\n@@ -9 +9 @@\n-x\n+y\n", owner) == {None, "lrn"}  # common: covers all
    assert section_text("\n".join(lines), "lrn") == "| lrn | 2 |\n### lrn (§3.3)\n- arms"
    assert protocol_version_of("# P\nVersion: 2\n") == 2 and protocol_version_of("# P\n") == 1


def test_a_cached_run_is_reused_only_from_the_same_training_code_after_the_protocol(
    tiny_folder: Path, experiment_results: dict
) -> None:
    folder, first = experiment_results["bias-one"]
    record = folder / first["runs"][0]["folder"] / "run.json"
    saved = json.loads(record.read_text())
    assert saved["provenance"]["training_code"] and saved["provenance"]["started"]
    for change, why in (
        ({"training_code": "0" * 64}, "trained by other training code"),
        ({"started": "2020-01-01T00:00:00+0000"}, "started before the protocol's commit"),
    ):
        record.write_text(json.dumps({**saved, "provenance": {**saved["provenance"], **change}}))
        logs: list[str] = []
        run_experiment("bias-one", str(tiny_folder), folder, progress=False, log=logs.append, **TINY)
        if why.startswith("started") and not any("not reusing" in s for s in logs):
            pytest.skip("not a git checkout: the protocol's commit time is unknown")
        assert any(why in s for s in logs), logs
        assert sum(s.startswith("[bias-one] training") for s in logs) == 1  # that run only, trained again
        saved = json.loads(record.read_text())


def test_the_readme_paper_table_is_the_generator_output() -> None:
    """docs/paper.md's table of every claim is `benchmarks/paper_table.py docs/paper`'s output as it is
    now, and the README's one row per experiment is its `--summary` (a rerun experiment changes them;
    the pages must follow)."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("paper_table", root / "benchmarks" / "paper_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    generated = module.table(root / "docs" / "paper")
    assert generated.count("\n") >= 2 and "| v2 |" in generated and "| v1, superseded |" in generated
    assert generated in (root / "docs" / "paper.md").read_text()
    summary = module.summary(root / "docs" / "paper")
    assert summary.count("\n") >= len(EXPERIMENTS) and summary in (root / "README.md").read_text()


# -- qualitative figures ----------------------------------------------------------------------------
def test_visualize_kernels(trained_run: Path, tmp_path: Path) -> None:
    from alexnet.visualize import kernel_tiles

    assert main(["visualize", "kernels", str(trained_run), "--out", str(tmp_path / "k.png")]) == 0
    assert Image.open(tmp_path / "k.png").size[0] > 200
    w = torch.randn(8, 3, 5, 5)
    t = kernel_tiles(w)
    assert t.shape == (8, 5, 5, 3) and t.min() >= 0 and t.max() <= 1
    per = t.reshape(8, -1)  # each kernel scaled on its own: its largest weight touches 0 or 1
    assert np.all(np.isclose(per.max(1), 1.0) | np.isclose(per.min(1), 0.0))


def test_visualize_kernels_of_alexnet_shows_both_columns(tmp_path: Path) -> None:
    from alexnet.models import create_model
    from alexnet.visualize import plot_kernels

    model = create_model("alexnet", num_classes=10)
    out = plot_kernels(model, tmp_path / "k.png", columns=2)
    img = Image.open(out)
    assert img.size[0] > img.size[1]  # two panels side by side


def test_neighbors_finds_the_query_itself(
    trained_run: Path, tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queries = [str(tiny_folder / "train" / "red" / "0003.png"), str(tiny_folder / "train" / "blue" / "0010.png")]
    assert (
        main(
            [
                "neighbors",
                str(trained_run),
                "--query",
                *queries,
                "--data",
                str(tiny_folder),
                "--k",
                "4",
                "--out",
                str(tmp_path / "nn.png"),
                "--json",
            ]
        )
        == 0
    )
    r = json.loads(capsys.readouterr().out)
    assert (tmp_path / "nn.png").is_file() and r["searched"] == 180
    for q, label in zip(r["queries"], ("red", "blue")):
        first = q["neighbours"][0]
        assert first["distance"] == pytest.approx(0.0, abs=1e-3) and first["label"] == label
        d = [n["distance"] for n in q["neighbours"]]
        assert d == sorted(d) and len(d) == 4


def test_neighbors_bad_query_is_one_line(
    trained_run: Path, tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert main(["neighbors", str(trained_run), "--query", str(bad), "--data", str(tiny_folder)]) == 2
    assert "--query" in capsys.readouterr().err
    good = str(tiny_folder / "train" / "red" / "0003.png")
    assert (
        main(
            [
                "neighbors",
                str(trained_run),
                "--query",
                good,
                "--data",
                str(tiny_folder),
                "--layer",
                "fc7",
                "--out",
                str(tmp_path / "nn.png"),
            ]
        )
        == 2
    )  # the same layer names as `alexnet features`
    assert "--layer fc7: cifar_80sec has" in capsys.readouterr().err


# -- the options the experiments use ------------------------------------------------------------------
def test_target_train_error_ends_the_run(tiny_folder: Path, tmp_path: Path) -> None:
    from alexnet import TrainConfig
    from alexnet.training import train

    cfg = TrainConfig(
        model="cifar_80sec",
        data=str(tiny_folder),
        out=str(tmp_path / "r"),
        epochs=30,
        batch_size=32,
        lr=0.05,
        schedule="constant",
        model_options={"init": "torch"},
        workers=0,
        target_train_error=0.5,
    )
    r = train(cfg, progress=False, log=lambda s: None)
    assert len(r.metrics) < 30 and r.metrics[-1]["train_top1_error"] <= 0.5
    assert all(m["train_top1_error"] > 0.5 for m in r.metrics[:-1])
    assert not math.isnan(r.metrics[-1]["val_top1_error"])
