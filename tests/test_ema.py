"""The moving average of the weights (``--model-ema``): AveragedModel's arithmetic without its host
reads, a hand-computed average, torchvision's decay adjustment and warm-up copy, the columns, the
checkpoints, ``evaluate --ema`` and ``export --ema``, bad values refused. Exact resume with it on is
in tests/test_resume.py."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from alexnet import TrainConfig, UserError
from alexnet.engine.ema import WeightEMA, effective_decay
from alexnet.models import create_model


def _nudge(model: torch.nn.Module, seed: int) -> None:
    """What an optimizer step does, for the test: every parameter moves."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)


def test_the_update_is_averagedmodels_bit_for_bit_and_a_hand_computed_average() -> None:
    torch.manual_seed(0)
    model = create_model("cifar_18pct", num_classes=10)
    ours = WeightEMA(model, decay=0.9)
    ref = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    hand = {k: v.detach().clone().double() for k, v in model.state_dict().items()}
    for k in range(6):
        if k:
            _nudge(model, k)
        ours.update_parameters(model)
        ref.update_parameters(model)
        for name, v in model.state_dict().items():  # W_0 = the weights; W_k = 0.9 W_k-1 + 0.1 w_k
            hand[name] = v.double().clone() if k == 0 else 0.9 * hand[name] + 0.1 * v.double()
    assert ours.updates == 6 and int(ours.n_averaged) == 6 == int(ref.n_averaged)
    mine, theirs = ours.module.state_dict(), ref.module.state_dict()
    for name in mine:
        assert torch.equal(mine[name], theirs[name]), name
        torch.testing.assert_close(mine[name].double(), hand[name], rtol=0, atol=1e-6)
    assert not torch.equal(
        mine["features.conv1.weight"], model.state_dict()["features.conv1.weight"]
    )  # it lags the weights


def test_integer_buffers_follow_the_model_exactly() -> None:
    # LeNet-5's C3 connection table is a long buffer: an average computed in floats and truncated back
    # (AveragedModel's fallback for non-float tensors) could turn an index 5 into 4
    model = create_model("lenet5", num_classes=10)
    ema = WeightEMA(model, decay=0.999)
    for k in range(3):
        _nudge(model, k)
        ema.update_parameters(model)
    for (name, a), b in zip(ema.module.named_buffers(), model.buffers()):
        if not a.is_floating_point():
            assert torch.equal(a, b), name


def test_every_and_the_warm_up_copy() -> None:
    model = create_model("cifar_18pct", num_classes=10)
    ema = WeightEMA(model, decay=0.5, every=3)
    _nudge(model, 1)
    for step in (1, 2):  # not an update step
        ema.after_step(model, step, warming=False)
    assert ema.updates == 0 and not torch.equal(ema.module.features.conv1.weight, model.features.conv1.weight)
    ema.after_step(model, 3, warming=True)  # during the warm-up: a copy, and the average starts afresh
    assert ema.updates == 0 and torch.equal(ema.module.features.conv1.weight, model.features.conv1.weight)
    _nudge(model, 2)
    ema.after_step(model, 6, warming=False)  # the first update after the warm-up copies too
    assert ema.updates == 1 and torch.equal(ema.module.features.conv1.weight, model.features.conv1.weight)
    before = ema.module.features.conv1.weight.clone()
    _nudge(model, 3)
    ema.after_step(model, 9, warming=False)
    torch.testing.assert_close(ema.module.features.conv1.weight, 0.5 * before + 0.5 * model.features.conv1.weight)


def test_the_decay_adjustment_is_torchvisions() -> None:
    # torchvision's recipes: --model-ema-decay 0.99998, --model-ema-steps 32, 8 GPUs x 128 images, 600 epochs
    assert effective_decay(0.99998, 32, 1024, 600) == pytest.approx(1 - 2e-5 * 1024 * 32 / 600, rel=1e-12)
    assert effective_decay(0.9, 32, 1024, 1) == 0.0  # alpha capped at 1: the average is the weights


@pytest.mark.parametrize(
    "key, value, flag",
    [
        ("model_ema_decay", 1.0, "model-ema-decay"),
        ("model_ema_decay", 0.0, "model-ema-decay"),
        ("model_ema_decay", -0.5, "model-ema-decay"),
        ("model_ema_steps", 0, "model-ema-steps"),
    ],
)
def test_bad_values_are_one_line_naming_the_flag(key: str, value: float, flag: str) -> None:
    with pytest.raises(UserError, match=flag):
        TrainConfig(**{key: value}).validate()


@pytest.fixture(scope="module")
def ema_run(tiny_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from alexnet.training import train

    out = tmp_path_factory.mktemp("ema") / "run"
    cfg = TrainConfig(
        model="cifar_80sec",
        data=str(tiny_folder),
        out=str(out),
        epochs=3,
        batch_size=32,
        lr=0.05,
        schedule="cosine",
        warmup_epochs=1,
        model_options={"init": "torch"},
        model_ema=True,
        model_ema_steps=1,  # an update after every step: the warm-up's last step too (the unit tests: every)
        model_ema_decay=0.99,
        val_split=0.2,
        workers=0,
        precision="fp32",
    )
    train(cfg, progress=False, log=lambda s: None)
    return out


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_run_evaluates_both_and_keeps_both(ema_run: Path) -> None:
    rows = _rows(ema_run)
    assert len(rows) == 3
    # the first epoch is the warm-up: the average is a copy of the weights, so it scores the same
    assert rows[0]["ema_val_top1_error"] == rows[0]["val_top1_error"]
    assert rows[0]["ema_val_loss"] == rows[0]["val_loss"]
    assert rows[-1]["ema_val_loss"] != rows[-1]["val_loss"]  # after it, the average lags the weights
    assert rows[-1]["ema_test_top1_error"] != "nan" and rows[0]["ema_test_top1_error"] == "nan"
    last = torch.load(ema_run / "last.pt", weights_only=True)
    best = torch.load(ema_run / "best.pt", weights_only=True)
    assert last["model_ema"].keys() == last["model"].keys() and "model_ema" in best
    assert last["train_state"]["ema_updates"] > 0


def test_evaluate_ema_gives_the_runs_own_ema_figure(ema_run: Path, tiny_folder: Path) -> None:
    from alexnet.cli import main

    # the held-out split is the training run's; the test split is the folder's val/: the run's figure
    row = _rows(ema_run)[-1]
    out = ema_run.parent / "ev"
    assert (
        main(["evaluate", str(ema_run / "last.pt"), "--data", str(tiny_folder), "--ema", "--json", "--out", str(out)])
        == 0
    )
    got = json.loads((out / "result.json").read_text())
    assert got["weights"] == "ema"
    assert got["top1_error"] == pytest.approx(float(row["ema_test_top1_error"]), abs=1e-6)
    assert (
        main(["evaluate", str(ema_run / "last.pt"), "--data", str(tiny_folder), "--json", "--out", str(out), "--force"])
        == 0
    )
    assert json.loads((out / "result.json").read_text())["top1_error"] == pytest.approx(
        float(row["test_top1_error"]), abs=1e-6
    )


def test_export_ema_writes_the_average(ema_run: Path, tmp_path: Path) -> None:
    from alexnet import load
    from alexnet.export import export_safetensors

    out = export_safetensors(ema_run / "last.pt", tmp_path / "exp", ema=True)
    config = json.loads((out / "config.json").read_text())
    assert config["weights"] == "ema" and "moving average" in (out / "README.md").read_text()
    want = torch.load(ema_run / "last.pt", weights_only=True)["model_ema"]
    got = load(out).model.state_dict()
    for k in want:
        assert torch.equal(got[k], want[k]), k
    again = load(out, ema=True).model.state_dict()  # an export of the average is the average, asked either way
    assert all(torch.equal(again[k], want[k]) for k in want)
    plain = export_safetensors(ema_run / "last.pt", tmp_path / "plain")
    with pytest.raises(UserError, match="not of its EMA"):
        load(plain, ema=True)


def test_ema_on_a_run_without_it_is_one_line(trained_run: Path) -> None:
    from alexnet import load

    with pytest.raises(UserError, match="no EMA weights") as e:
        load(trained_run, ema=True)
    assert "\n" not in str(e.value) and "best.pt" in str(e.value)
    assert math.isnan(float(_rows(trained_run)[-1]["ema_val_top1_error"] or "nan"))
