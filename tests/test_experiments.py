"""The paper experiments in tiny configurations (generated data, a few steps), the report page and
the qualitative figures (kernels, nearest neighbours)."""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.cli import main
from alexnet.experiments import EXPERIMENTS, run_experiment
from alexnet.experiments.base import (STATUSES, detectable, epochs_to_reach, judge, judge_level, merge_configs,
                                      paired_t_test, power, seconds_to_reach, seeds_for, sign_test, stats,
                                      student_t_sf)

TINY = dict(seeds=2, epochs=1, train_images=48, overrides={"batch_size": 16, "workers": 0})
ARMS = {"relu-vs-tanh": 4, "lrn": 2, "overlap-pool": 2, "dropout": 2, "augment": 3, "ten-crop": 1, "columns": 2,
        "lenet5": 5, "weight-decay": 2, "bias-one": 2}


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
                a[4 + 7 * c: 10 + 7 * c, 6:22] = 250
                Image.fromarray(a).save(d / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def experiment_results(tiny_folder: Path, digits_folder: Path, tmp_path_factory: pytest.TempPathFactory
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
    for key in ("title", "section", "claim", "command", "table", "measured", "verdict", "plots", "runs", "seconds",
                "machine", "versions", "settings"):
        assert on_disk[key] not in (None, "", [], {}), key
    assert on_disk["settings"]["seeds"] == [0, 1]
    assert on_disk["verdict"]["status"] in STATUSES
    assert on_disk["verdict"]["reason"] and on_disk["verdict"]["figure"]
    assert on_disk["verdict"]["claims"][0]["status"] == on_disk["verdict"]["status"]
    # every arm with its network, options and parameter count
    assert len(on_disk["arms"]) == ARMS[name]
    for arm in on_disk["arms"]:
        assert set(arm) == {"name", "model", "options", "parameters"} and arm["parameters"] > 1000
    assert on_disk["protocol"]["path"] == "docs/paper/protocol.md"
    assert on_disk["versions"]["torch"] == torch.__version__
    # every arm trained for every seed, each a complete run folder
    assert len(on_disk["runs"]) == 2 * ARMS[name]
    for run in on_disk["runs"]:
        assert 0.0 <= run["test_top1_error"] <= 1.0
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
    for name in ("overlap-pool", "dropout", "augment"):
        _, r = experiment_results[name]
        for run in r["runs"]:
            assert 0.0 <= run["train_eval_top1_error"] <= 1.0
    _, r = experiment_results["ten-crop"]
    for run in r["runs"]:
        assert 0.0 <= run["ten_crop_top1_error"] <= 1.0
        assert run["centre_top1_error"] == pytest.approx(run["test_top1_error"])


def test_rerun_reuses_finished_runs_and_adds_seeds(tiny_folder: Path, experiment_results: dict) -> None:
    folder, first = experiment_results["lrn"]
    logs: list[str] = []
    again = run_experiment("lrn", str(tiny_folder), folder, progress=False, log=logs.append,
                           **{**TINY, "seeds": 3})
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
        len(json.loads((d / "result.json").read_text())["plots"]) for d in dirs)
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
    args = ["experiment", "ten-crop", "--data", str(tiny_folder), "--out", str(tmp_path / "tc"), "--seeds", "1",
            "--epochs", "1", "--train-images", "30", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "top-1 error, ten patches averaged" in out and "verdict:" in out
    r = json.loads((tmp_path / "tc" / "result.json").read_text())
    assert r["command"].startswith("alexnet experiment ten-crop --data")


# -- statistics and verdicts ------------------------------------------------------------------------
def test_step_125_walks_the_1_2_5_series() -> None:
    from alexnet.experiments.paper import step_125

    assert [step_125(x, True) for x in (0.0002, 0.0005, 0.001, 0.005, 0.1)] == [0.0005, 0.001, 0.002, 0.01, 0.2]
    assert [step_125(x, False) for x in (0.0002, 0.001, 0.005, 0.01, 0.1)] == [0.0001, 0.0005, 0.002, 0.005, 0.05]


def test_learning_rate_search_grows_the_grid_until_the_best_is_inside() -> None:
    from alexnet.experiments.paper import search_learning_rate

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
    init and lrn (the shallow merge once lost them)."""
    for name, (folder, r) in experiment_results.items():
        for run in r["runs"]:
            cfg = json.loads((folder / run["folder"] / "run.json").read_text())["config"]
            opts = cfg["model_options"]
            assert cfg["val_split"] == 0.1, (name, run["arm"])  # selection never on the test split
            if name == "lenet5":
                assert opts["variant"] in ("original", "modern") and cfg["normalize"] == "lecun"
                assert cfg["translate"] == 0 and not cfg["random_crop"]  # the paper's no-distortion setting
                continue
            if (name == "relu-vs-tanh" and run["arm"].startswith("paper-")) or name == "lrn":
                assert opts["init"] == "cuda-convnet" and cfg["normalize"] == "mean_image", run["arm"]
            elif name == "bias-one":
                assert opts["init"] == "cuda-convnet" and opts["hidden_bias"] in (0.0, 1.0)
            else:
                assert opts["init"] == "torch", (name, run["arm"])
            if name == "lrn":
                assert opts["lrn"] in ("none", "cross") and cfg["lr"] == 0.001 and not cfg["nesterov"]
            else:
                assert opts["lrn"] == "none", (name, run["arm"])
            if name == "relu-vs-tanh":
                assert not cfg["nesterov"], run["arm"]  # classical momentum, as cuda-convnet and §5
            if name == "overlap-pool":
                assert opts["pools"] == "max"
            if name == "columns":
                assert (opts["columns"], opts["width"]) in ((1, 53), (2, 32))
            if name in ("augment", "ten-crop"):
                assert opts["input_size"] == 24 and cfg["crop_size"] == 24, (name, run["arm"])
            if name == "dropout":
                assert opts["hidden"] == 256 and cfg["model"] == "cifar_80sec"


def test_merge_configs_merges_option_tables_key_by_key() -> None:
    a = {"lr": 0.1, "model_options": {"init": "torch", "lrn": "none"}}
    b = {"crop_size": 24, "model_options": {"input_size": 24}}
    c = {"lr": 0.2, "model_options": {"lrn": "cross"}}
    assert merge_configs(a, b, c) == {"lr": 0.2, "crop_size": 24,
                                      "model_options": {"init": "torch", "lrn": "cross", "input_size": 24}}
    assert a["model_options"] == {"init": "torch", "lrn": "none"}  # the inputs are not changed


def test_student_t_matches_scipy() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    for t, df in ((2.78, 2), (0.5, 4), (-1.2, 3), (10.0, 1), (1.7, 9), (0.0, 5), (3.5, 30)):
        assert student_t_sf(t, df) == pytest.approx(scipy_stats.t.sf(t, df), rel=1e-9, abs=1e-12)
    x = [0.02, 0.04, 0.015, -0.003]
    ref = scipy_stats.ttest_1samp(x, 0.0, alternative="greater")
    got = paired_t_test(x)
    assert got["t"] == pytest.approx(ref.statistic) and got["p"] == pytest.approx(ref.pvalue) and got["df"] == 3


def test_three_seeds_at_two_standard_errors_are_not_significant() -> None:
    """The dropout case of the old review: mean 2.50 pts, SE 0.90, n = 3 -> t = 2.78, p = 0.054: not
    significant (no longer "partly"), the test in the reason."""
    gains = [0.025 - 0.009 * 3**0.5, 0.025, 0.025 + 0.009 * 3**0.5]
    v = judge(gains, None, "the gap's drop", figure="+2.50 pts")
    assert v.test["t"] == pytest.approx(2.78, abs=0.01) and v.test["df"] == 2 and 0.05 < v.test["p"] < 0.06
    assert v.status == "not significant" and "t = 2.78, df = 2, p = 0.054" in v.reason


def test_judge_follows_the_protocols_rules() -> None:
    assert judge([0.02, 0.021, 0.019], 0.02, "x", figure="f").status == "reproduced"
    small = judge([0.002, 0.0021, 0.0019], 0.02, "x", figure="f")  # real but a tenth of the paper's
    assert small.status == "reproduced in direction, size differs" and small.test["ratio_to_paper"] == pytest.approx(0.1)
    big = judge([0.06, 0.061, 0.059], 0.02, "x", figure="f")  # three times the paper's: said so, not "reproduced"
    assert big.status == "reproduced in direction, size differs" and "3.00x" in big.reason
    assert judge([0.03, -0.02, 0.01], 0.02, "x", figure="f").status == "not significant"  # the sign, in the noise
    assert judge([-0.01, -0.02, -0.011], 0.02, "x", figure="f").status == "contradicted"
    assert judge([0.05], 0.02, "x", figure="f").status == "inconclusive"  # one seed cannot tell
    # no number in the paper: significance is enough
    assert judge([0.002, 0.0021, 0.0019], None, "x", figure="f").status == "reproduced"
    # a ratio claim ("six times"): effects are log ratios
    assert judge([math.log(5.5), math.log(6.5), math.log(6.1)], 6.0, "x", figure="f", log=True).status == "reproduced"
    assert judge([math.log(1.4), math.log(1.5), math.log(1.45)], 6.0, "x", figure="f", log=True).status == \
        "reproduced in direction, size differs"
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
        assert v.status == status and v.test["kind"] == "sign"
        assert v.test["p"] == pytest.approx(0.5**n_seeds)
    # some pairs the other way, some unknown (both censored): the sign test counts the ordered pairs only
    assert sign_test([1, 1, -1, 0, 1])["p"] == pytest.approx(5 / 16)
    v = judge([1.0, 1.0, 1.0, 1.0, 1.0], 6.0, "x", figure="f", log=True, censored=1, signs=[1, 1, 1, 1, 1])
    assert v.status != "reproduced"


def test_level_claims_against_a_tolerance() -> None:
    """LeNet-5's 0.95%: reproduced when significantly below 1.25 x 0.95%, contradicted when above."""
    assert judge_level([0.0100, 0.0102, 0.0098], 0.0095, "x", figure="f").status == "reproduced"
    assert judge_level([0.0140, 0.0150, 0.0145], 0.0095, "x", figure="f").status == "contradicted"
    assert judge_level([0.0090, 0.0150, 0.0120], 0.0095, "x", figure="f").status == "not significant"


def test_power_calculation_matches_known_values() -> None:
    """The shifted-central-t approximation against the exact power, simulated (400,000 draws of n
    normal differences, one-sided t-test at 5%): d = 1, n = 8: 0.815; d = 2, n = 4: 0.908. The
    approximation errs low by under 0.01; the inverse functions agree with it."""
    assert power(1.0, 1.0, 8) == pytest.approx(0.815, abs=0.015)
    assert power(2.0, 1.0, 4) == pytest.approx(0.908, abs=0.015)
    n = seeds_for(1.0, 1.0)
    assert power(1.0, 1.0, n) >= 0.8 > power(1.0, 1.0, n - 1)
    assert power(detectable(1.0, 8), 1.0, 8) == pytest.approx(0.8, abs=1e-3)


def test_lenet5_verdict_can_say_contradicted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from alexnet.experiments import base, paper

    def fake_run(self, arm, seed, cfg_base, **changes):  # type: ignore[no-untyped-def]
        err = 0.0145 + 0.0005 * (seed - 1) if arm == "1998" else 0.009
        return base.Run(arm, seed, tmp_path, {}, [{"epoch": 1, "val_top1_error": 0.01, "test_top1_error": err,
                                                   "train_top1_error": 0.01, "train_loss": 0.1, "val_loss": 0.1,
                                                   "val_top5_error": 0.0}], 1.0)

    monkeypatch.setattr(base.Context, "run", fake_run)
    monkeypatch.setattr(paper, "plot_arms", lambda path, *a, **k: str(path.name))
    ctx = base.Context(EXPERIMENTS["lenet5"], "mnist", tmp_path, seeds=3)
    out = EXPERIMENTS["lenet5"].run(ctx)
    assert out.verdicts[0].status == "contradicted" and "p = " in out.verdicts[0].reason
    assert out.verdicts[0].figure == "1.45% ± 0.05 (3 seeds)"  # the test split's error, not the validation's
    assert {v.status for v in out.verdicts[1:]} == {"measured"}


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


def _protocol_owner(lines: list[str], names: set[str]) -> list[str | None]:
    """For each line of protocol.md, the experiment it belongs to (its "### NAME" section or its row
    of the seeds table), or None for the common parts, which cover every experiment."""
    owner: list[str | None] = []
    section: str | None = None
    for line in lines:
        if line.startswith("## "):
            section = None
        elif line.startswith("### "):
            section = line[4:].split(" ", 1)[0]
        row = line.startswith("| ") and line[2:].split(" ", 1)[0]
        owner.append(section if section in names else row if row in names else None)
    return owner


def _covered(diff: str, owner: list[str | None]) -> set[str | None]:
    """The owners (``_protocol_owner``) of the lines a ``git show -U0`` diff changed, on its new side;
    a deletion (``+N,0``: the gap after line N) counts as a change of line N."""
    import re

    covered: set[str | None] = set()
    for start, count in re.findall(r"^@@ -\S+ \+(\d+)(?:,(\d+))? @@", diff, re.M):
        first, n = max(int(start), 1), max(int(count or 1), 1)
        covered |= {owner[i - 1] if i <= len(owner) else None for i in range(first, first + n)}
    return covered


def _protocol_changes(root: Path, path: str, names: set[str]) -> list[tuple[datetime.datetime, set[str | None]]]:
    """Every commit of protocol.md: its time and the owners of the lines it changed (None: common)."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout

    out = []
    for line in git("log", "--format=%H %cI", "--", path).splitlines():
        commit, when = line.split()
        owner = _protocol_owner(git("show", f"{commit}:{path}").splitlines(), names)
        out.append((datetime.datetime.fromisoformat(when), _covered(git("show", "-U0", "--format=", commit, "--", path),
                                                                    owner)))
    return out


def test_published_results_come_after_the_protocol() -> None:
    """docs/paper: every result.json finished after the last commit of the protocol that covers it (its
    own section or the common parts; an amendment of one experiment's section means rerunning that
    experiment only), and records its arms' parameter counts."""
    import subprocess


    root = Path(__file__).resolve().parents[1]
    protocol = root / "docs" / "paper" / "protocol.md"
    assert protocol.is_file()
    shallow = subprocess.run(["git", "-C", str(root), "rev-parse", "--is-shallow-repository"], capture_output=True,
                             text=True)
    if shallow.stdout.strip() == "true":  # its oldest commit would stand in for the protocol's
        pytest.skip("a shallow clone: the protocol's commit is not in its history")
    try:
        changes = _protocol_changes(root, "docs/paper/protocol.md", set(EXPERIMENTS))
    except subprocess.CalledProcessError:
        changes = []
    if not changes:
        pytest.skip("not a git checkout with the protocol committed")
    results = sorted((root / "docs" / "paper").glob("*/result.json"))
    assert results
    for f in results:
        r = json.loads(f.read_text())
        finished = datetime.datetime.strptime(r["finished"], "%Y-%m-%dT%H:%M:%S%z")
        covering = [when for when, owners in changes if None in owners or r["experiment"] in owners]
        assert covering and finished > max(covering), f"{f}: finished {finished}, before the protocol's {max(covering)}"
        assert all(a["parameters"] > 0 for a in r["arms"]) and r["arms"], f
        assert r["protocol"]["commit"], f
        assert "/work/" not in r["command"] and not r["command"].split("--out ")[-1].startswith("/"), f


def test_a_protocol_amendment_covers_its_own_section_only() -> None:
    owner = _protocol_owner(["# P", "## Common", "text", "## Seeds", "| lrn | 2 |", "| columns | 1 |",
                             "## The experiments", "### lrn (§3.3)", "- arms", "### columns (§3.2)", "- arms",
                             "## Claims not tested", "- x"], {"lrn", "columns"})
    assert owner == [None, None, None, None, "lrn", "columns", None, "lrn", "lrn", "columns", "columns", None, None]
    assert _covered("@@ -9,0 +10,2 @@\n+a\n+b\n", owner) == {"columns"}  # lines added at 10-11
    assert _covered("@@ -10 +9,0 @@\n-x\n", owner) == {"lrn"}  # line 10 deleted: the gap after line 9
    assert _covered("@@ -3 +3 @@\n-x\n+y\n@@ -9 +9 @@\n-x\n+y\n", owner) == {None, "lrn"}  # common: covers all


def test_the_readme_paper_table_is_the_generator_output() -> None:
    """README "Reproducing the paper": the claims table is `benchmarks/paper_table.py docs/paper`'s
    output as it is now (a rerun experiment changes it; the README must follow)."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("paper_table", root / "benchmarks" / "paper_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    generated = module.table(root / "docs" / "paper")
    assert generated.count("\n") >= 2 and "| **" in generated
    assert generated in (root / "README.md").read_text()


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


def test_neighbors_finds_the_query_itself(trained_run: Path, tiny_folder: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    queries = [str(tiny_folder / "train" / "red" / "0003.png"), str(tiny_folder / "train" / "blue" / "0010.png")]
    assert main(["neighbors", str(trained_run), "--query", *queries, "--data", str(tiny_folder), "--k", "4",
                 "--out", str(tmp_path / "nn.png"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert (tmp_path / "nn.png").is_file() and r["searched"] == 180
    for q, label in zip(r["queries"], ("red", "blue")):
        first = q["neighbours"][0]
        assert first["distance"] == pytest.approx(0.0, abs=1e-3) and first["label"] == label
        d = [n["distance"] for n in q["neighbours"]]
        assert d == sorted(d) and len(d) == 4


def test_neighbors_bad_query_is_one_line(trained_run: Path, tiny_folder: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert main(["neighbors", str(trained_run), "--query", str(bad), "--data", str(tiny_folder)]) == 2
    assert "--query" in capsys.readouterr().err
    good = str(tiny_folder / "train" / "red" / "0003.png")
    assert main(["neighbors", str(trained_run), "--query", good, "--data", str(tiny_folder), "--layer", "fc7",
                 "--out", str(tmp_path / "nn.png")]) == 2  # the same layer names as `alexnet features`
    assert "--layer fc7: cifar_80sec has" in capsys.readouterr().err


# -- the options the experiments use ------------------------------------------------------------------
def test_target_train_error_ends_the_run(tiny_folder: Path, tmp_path: Path) -> None:
    from alexnet import TrainConfig
    from alexnet.training import train

    cfg = TrainConfig(model="cifar_80sec", data=str(tiny_folder), out=str(tmp_path / "r"), epochs=30, batch_size=32,
                      lr=0.05, schedule="constant", model_options={"init": "torch"}, workers=0,
                      target_train_error=0.5)
    r = train(cfg, progress=False, log=lambda s: None)
    assert len(r.metrics) < 30 and r.metrics[-1]["train_top1_error"] <= 0.5
    assert all(m["train_top1_error"] > 0.5 for m in r.metrics[:-1])
    assert not math.isnan(r.metrics[-1]["val_top1_error"])
