"""Training on generated data: the loss falls, accuracy beats chance, the run folder is complete,
checkpoints load with weights_only=True, evaluation's top-k is right, resume continues."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from alexnet import TrainConfig, UserError
from alexnet.checkpoint import load_checkpoint, save_checkpoint
from alexnet.config import FORMER_DEFAULTS
from alexnet.data.base import InMemoryDataset
from alexnet.data.loader import BatchLoader
from alexnet.data.transforms import EvalTransform
from alexnet.engine.evaluation import evaluate_model, topk_correct
from alexnet.engine.schedule import LRSchedule
from alexnet.training import train


def test_short_training_run_learns(trained_run: Path) -> None:
    rows = list(csv.DictReader(open(trained_run / "metrics.csv")))
    assert len(rows) == 3
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < losses[0] * 0.7
    assert float(rows[-1]["val_top1_error"]) < 0.4  # chance is 2/3 with three classes
    for name in ("config.toml", "metrics.csv", "curves.png", "confusion.png", "last.pt", "best.pt", "environment.json"):
        assert (trained_run / name).is_file(), name
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained_run / "tensorboard"))
    events.Reload()
    assert {"train/loss", "val/top1_error", "val/top5_error", "lr", "images_per_sec"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("val/top1_error")] == [1, 2, 3]
    assert not list(trained_run.glob(".*tmp"))  # no temp files left by the atomic writes


def test_checkpoints_load_with_weights_only(trained_run: Path) -> None:
    for name in ("best.pt", "last.pt"):
        ck = torch.load(trained_run / name, weights_only=True)
        assert ck["model_name"] == "cifar_80sec" and ck["classes"] == ["blue", "green", "red"]
        assert set(ck["eval_transform"]) >= {"image_size", "crop_size", "mean", "std", "channels"}
        assert isinstance(ck["model"]["classifier.fc10.weight"], torch.Tensor)
        assert ck["config"]["model"] == "cifar_80sec"
    assert "optimizer" in torch.load(trained_run / "last.pt", weights_only=True)


def test_config_toml_reproduces_the_run(trained_run: Path) -> None:
    cfg = TrainConfig.from_recipe(trained_run / "config.toml")
    assert cfg.model == "cifar_80sec" and cfg.epochs == 3 and cfg.model_options == {"init": "torch"}


def test_existing_run_is_not_overwritten_and_resume_continues(tiny_folder: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(
        model="lenet5",
        data=str(tiny_folder),
        out=str(tmp_path / "r"),
        epochs=1,
        batch_size=32,
        lr=0.01,
        schedule="constant",
        workers=0,
        max_train_images=60,
    )
    train(cfg, progress=False, log=lambda s: None)
    with pytest.raises(UserError, match="already holds a run"):
        train(cfg, progress=False, log=lambda s: None)
    cfg.epochs, cfg.resume = 2, True
    result = train(cfg, progress=False, log=lambda s: None)
    assert [m["epoch"] for m in result.metrics] == [1, 2]


def test_resume_at_an_epoch_boundary_is_bitwise_identical(tiny_folder: Path, tmp_path: Path) -> None:
    common = dict(
        model="cifar_18pct",
        data=str(tiny_folder),
        batch_size=32,
        lr=0.01,
        workers=0,
        max_train_images=90,
        schedule="step",
        step_size=1,
        gamma=0.5,
        translate=2,
    )  # lr depends on the step only
    train(TrainConfig(out=str(tmp_path / "a"), epochs=2, **common), progress=False, log=lambda s: None)
    train(TrainConfig(out=str(tmp_path / "b"), epochs=1, **common), progress=False, log=lambda s: None)
    train(TrainConfig(out=str(tmp_path / "b"), epochs=2, resume=True, **common), progress=False, log=lambda s: None)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


class _Lookup(nn.Module):
    """Returns fixed logits per image; the image's first pixel holds its index."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[x[:, 0, 0, 0].round().long()]


def test_evaluate_topk_against_a_hand_computed_example() -> None:
    logits = torch.tensor(
        [  # 6 classes; label -> rank of the label in the row
            [9.0, 1, 2, 3, 4, 5],  # label 0: rank 1
            [2.0, 1, 9, 3, 4, 5],  # label 1: rank 6 (lowest)
            [5.0, 4, 3, 9, 1, 0],  # label 2: rank 4
            [0.0, 1, 2, 3, 4, 5],  # label 3: rank 3
            [5.0, 4, 3, 2, 1, 0],  # label 5: rank 6
        ]
    )
    labels = torch.tensor([0, 1, 2, 3, 5])
    # top-1: only row 0 -> error 4/5; top-5: rows 0, 2, 3 -> error 2/5
    assert topk_correct(logits, labels, 1).tolist() == [True, False, False, False, False]
    assert topk_correct(logits, labels, 5).tolist() == [True, False, True, True, False]
    images = torch.arange(5, dtype=torch.uint8).view(5, 1, 1, 1).expand(5, 1, 2, 2).contiguous()
    ds = InMemoryDataset(images, labels, [f"c{i}" for i in range(6)])
    t = EvalTransform(2, 2, 0, 1, (0.0,), (1.0,))
    res = evaluate_model(_Lookup(logits), BatchLoader(ds, 2), t, ds.classes)
    assert res.n == 5 and math.isclose(res.top1_error, 0.8) and math.isclose(res.top5_error, 0.4)
    expect_loss = nn.functional.cross_entropy(logits, labels).item()
    assert math.isclose(res.loss, expect_loss, rel_tol=1e-5)
    assert res.confusion[1, 2] == 1 and res.confusion.sum() == 5
    assert res.per_class_accuracy[0] == 1.0 and res.per_class_accuracy[1] == 0.0


def test_plateau_schedule_divides_by_ten_at_most_three_times() -> None:
    cfg = TrainConfig(lr=0.01, schedule="plateau", plateau_patience=2, plateau_threshold=0.001, max_reductions=3)
    s = LRSchedule(cfg, steps_per_epoch=10)
    errors = [0.5, 0.4, 0.4, 0.4, 0.3, 0.3, 0.3] + [0.3] * 10
    reduced = [s.observe(e) for e in errors]
    assert reduced[:7] == [False, False, False, True, False, False, True]
    assert sum(reduced) == 3
    assert math.isclose(s(0), 0.01 * 0.1**3)


def test_cosine_and_warmup() -> None:
    cfg = TrainConfig(lr=0.1, schedule="cosine", warmup_epochs=1, epochs=11)
    s = LRSchedule(cfg, steps_per_epoch=10)
    assert math.isclose(s(0), 0.01) and math.isclose(s(10), 0.1) and s(110) < 1e-9


def test_warmup_under_plateau_then_the_rule_counts_after_it() -> None:
    """Warm-up works under the plateau schedule (it did nothing before 2026-12-02), and epochs within
    the warm-up do not count towards the plateau rule's patience."""
    cfg = TrainConfig(lr=0.1, schedule="plateau", warmup_epochs=2, plateau_patience=1, plateau_threshold=0.0)
    s = LRSchedule(cfg, steps_per_epoch=10)
    assert [s(0), s(10), s(20)] == pytest.approx([0.01, 0.1 * (0.1 + 0.9 * 0.5), 0.1])
    # the same error for four epochs: the two in the warm-up are ignored, the third sets the best,
    # the fourth is the first without improvement
    assert [s.observe(0.5, e) for e in range(4)] == [False, False, False, True]
    assert s(40) == pytest.approx(0.01)
    # a run made before the fix resumes as it ran: its config.toml has no plateau_warmup key
    old = TrainConfig.from_dict(
        {**FORMER_DEFAULTS, **{k: v for k, v in cfg.to_dict().items() if k != "plateau_warmup"}}
    )
    before = LRSchedule(old, steps_per_epoch=10)
    assert not old.plateau_warmup and before(0) == 0.1
    assert [before.observe(0.5, e) for e in range(2)] == [False, True]


def test_lr_min_and_the_warmup_start_factor() -> None:
    cfg = TrainConfig(lr=0.1, schedule="cosine", warmup_epochs=1, epochs=11, lr_min=0.001, lr_warmup_decay=0.01)
    s = LRSchedule(cfg, steps_per_epoch=10)
    assert s(0) == pytest.approx(0.001) and s(10) == pytest.approx(0.1) and s(110) == pytest.approx(0.001)
    assert s(60) == pytest.approx(0.001 + 0.099 * 0.5)  # halfway through the cosine
    lin = LRSchedule(TrainConfig(lr=0.1, schedule="linear", epochs=10, lr_min=0.02), steps_per_epoch=10)
    assert lin(0) == pytest.approx(0.1) and lin(100) == pytest.approx(0.02) and lin(50) == pytest.approx(0.06)
    for bad, match in (({"lr_min": 0.5}, "lr-min"), ({"lr_min": -1e-3}, "lr-min"), ({"lr_warmup_decay": 0}, "decay")):
        with pytest.raises(UserError, match=match):
            TrainConfig(lr=0.1, **bad).validate()


def test_clip_grad_norm_bounds_the_global_norm_and_reports_it_before_clipping() -> None:
    from alexnet.engine.step import TrainStep
    from alexnet.models import create_model

    torch.manual_seed(0)
    model = create_model("lenet5")
    cfg = TrainConfig(model="lenet5", clip_grad_norm=0.05, lr=0.0, weight_decay=0.0, momentum=0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    step = TrainStep(model, model, opt, torch.amp.GradScaler("cpu", enabled=False), cfg, torch.device("cpu"), "fp32")
    x, y = torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))
    step.begin(0.0)
    step.micro(x, y, 1, last=True)
    before = torch.linalg.vector_norm(torch.stack([q.grad.norm() for q in model.parameters()]))
    assert before > 0.05
    step.update()
    after = torch.linalg.vector_norm(torch.stack([q.grad.norm() for q in model.parameters()]))
    assert float(step.grad_norm) == pytest.approx(float(before), rel=1e-5)
    assert float(after) == pytest.approx(0.05, rel=1e-4)
    with pytest.raises(UserError, match="clip-grad-norm"):
        TrainConfig(clip_grad_norm=-1).validate()


def test_atomic_save_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "x.pt"
    save_checkpoint({"model": {}, "model_name": "lenet5"}, path)

    class Boom:
        def __reduce__(self):  # noqa: ANN204
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        save_checkpoint({"model": {}, "model_name": "x", "bad": Boom()}, path)
    assert load_checkpoint(path)["model_name"] == "lenet5"
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]


def test_corrupt_or_foreign_checkpoints_are_refused(tmp_path: Path) -> None:
    (tmp_path / "corrupt.pt").write_bytes(b"\x80\x02garbage")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "corrupt.pt")
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(UserError, match="not an alexnet checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")

    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (print, ("code ran",))

    torch.save({"model": {}, "model_name": "x", "e": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")


def test_divergence_stops_with_a_message(tiny_folder: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(
        model="cifar_80sec",
        data=str(tiny_folder),
        out=str(tmp_path / "d"),
        epochs=1,
        lr=1e30,
        schedule="constant",
        workers=0,
        batch_size=16,
        model_options={"activation": "tanh"},
    )
    with pytest.raises(UserError, match="training diverged"):
        train(cfg, progress=False, log=lambda s: None)


def test_paper_alexnet_trains_on_a_folder_at_256_224_in_bf16(tmp_path: Path) -> None:
    from .conftest import make_folder

    root = make_folder(tmp_path / "big", {"train": 4, "val": 2}, size=300)
    cfg = TrainConfig.from_recipe(
        "alexnet_imagenet", data=str(root), out=str(tmp_path / "r"), epochs=1, batch_size=6, workers=0, precision="bf16"
    )
    said: list[str] = []
    result = train(cfg, progress=False, log=said.append)
    # on a CPU that emulates bf16 (oneDNN has no bf16 kernels for it) the run says so, once
    from alexnet.runtime import slow_half_precision

    note = slow_half_precision("bf16", "cpu")
    assert [s for s in said if s.startswith("--precision bf16")] == ([note] if note else [])
    ck = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    assert ck["eval_transform"]["image_size"] == 256 and ck["eval_transform"]["crop_size"] == 224
    assert result.final is not None and result.final.n == 6 and math.isfinite(result.metrics[0]["train_loss"])


def test_per_pixel_mean_image_normalisation(tmp_path: Path) -> None:
    from alexnet.data.packed.writer import prepare
    from alexnet.data.transforms import eval_batch
    from alexnet.inference.classifier import load

    from .conftest import make_folder

    src = make_folder(tmp_path / "src", {"train": 6, "val": 2}, size=36)
    prepare(src, tmp_path / "packed", size=36, workers=0, progress=False)
    for data in (str(src), str(tmp_path / "packed")):
        out = tmp_path / f"run-{Path(data).name}"
        cfg = TrainConfig(
            model="cifar_80sec",
            data=data,
            out=str(out),
            epochs=1,
            batch_size=6,
            workers=0,
            normalize="mean_image",
            image_size=36,
            crop_size=32,
            schedule="constant",
        )
        train(cfg, progress=False, log=lambda s: None)
        ck = torch.load(out / "best.pt", weights_only=True)
        m = ck["eval_transform"]["mean_image"]
        assert isinstance(m, torch.Tensor) and m.shape == (3, 36, 36)
        assert ck["eval_transform"]["mean"] == [0.0, 0.0, 0.0]
        clf = load(out)
        # the mean image is subtracted before the centre crop: a mean-valued image becomes zeros
        img = m.round().clamp(0, 255).to(torch.uint8)[None]
        x = eval_batch(img, clf.transform)
        assert x.shape == (1, 3, 32, 32) and x.abs().max() <= 0.5
    a = torch.load(tmp_path / "run-src" / "best.pt", weights_only=True)["eval_transform"]["mean_image"]
    b = torch.load(tmp_path / "run-packed" / "best.pt", weights_only=True)["eval_transform"]["mean_image"]
    assert torch.allclose(a, b, atol=1e-3)  # measured on the folder = stored by prepare


def test_gradient_accumulation_matches_one_large_batch(tiny_folder: Path, tmp_path: Path) -> None:
    common = dict(
        model="cifar_80sec",
        data=str(tiny_folder),
        batch_size=36,
        lr=0.05,
        workers=0,
        epochs=1,
        schedule="constant",
        random_crop=False,
        flip=False,
        model_options={"init": "torch"},
    )
    train(TrainConfig(out=str(tmp_path / "a"), **common), progress=False, log=lambda s: None)
    train(TrainConfig(out=str(tmp_path / "b"), accumulate=3, **common), progress=False, log=lambda s: None)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    with pytest.raises(UserError, match="not divisible"):
        train(TrainConfig(out=str(tmp_path / "c"), accumulate=5, **common), progress=False, log=lambda s: None)


@pytest.mark.slow
def test_compile_trains(tiny_folder: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(
        model="lenet5",
        data=str(tiny_folder),
        out=str(tmp_path / "r"),
        epochs=1,
        batch_size=30,
        workers=0,
        compile=True,
        max_train_images=60,
    )
    result = train(cfg, progress=False, log=lambda s: None)
    assert result.final is not None and math.isfinite(result.metrics[0]["train_loss"])
    torch.load(tmp_path / "r" / "best.pt", weights_only=True)  # the unwrapped model's keys


def test_ten_crop_figures_have_their_own_columns_and_selection_uses_the_centre_crop(
    tiny_folder: Path, tmp_path: Path
) -> None:
    """val_top1_error is the centre crop at every epoch (curves, best.pt); the last epoch's ten-patch
    figures go to val10_top1_error / val10_top5_error."""
    import alexnet

    cfg = TrainConfig(
        model="cifar_18pct",
        data=str(tiny_folder),
        out=str(tmp_path / "r"),
        epochs=2,
        batch_size=32,
        lr=0.05,
        workers=0,
        max_train_images=120,
        image_size=32,
        crop_size=24,
        model_options={"input_size": 24, "init": "torch"},
        ten_crop_eval=True,
    )
    result = train(cfg, progress=False, log=lambda s: None)
    rows = list(csv.DictReader(open(tmp_path / "r" / "metrics.csv")))
    assert math.isnan(float(rows[0]["val10_top1_error"])) and not math.isnan(float(rows[1]["val10_top1_error"]))
    assert result.final_ten_crop is not None and result.final is not None
    assert float(rows[1]["val10_top1_error"]) == pytest.approx(result.final_ten_crop.top1_error)
    assert float(rows[1]["val10_top5_error"]) == pytest.approx(result.final_ten_crop.top5_error)
    clf = alexnet.load(tmp_path / "r" / "last.pt")
    centre = clf.evaluate(str(tiny_folder), progress=False)
    assert float(rows[1]["val_top1_error"]) == pytest.approx(centre.top1_error)  # the centre crop, not ten
    assert result.best_top1_error == pytest.approx(min(float(r["val_top1_error"]) for r in rows), abs=1e-5)


def test_multistep_schedule_bias_lr_and_per_layer_weight_decay() -> None:
    from alexnet.engine.optim import make_optimizer
    from alexnet.models import create_model

    cfg = TrainConfig(
        model="cifar_18pct",
        lr=0.001,
        epochs=140,
        schedule="multistep",
        milestones=[120, 130],
        weight_decay=0.004,
        bias_lr_factor=2.0,
        weight_decay_layers={"fc10": 1.0},
    )
    s = LRSchedule(cfg, 10)
    assert [s(0), s(1199), s(1200), s(1299), s(1300)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5])
    model = create_model("cifar_18pct")
    opt = make_optimizer(cfg, model)
    by_param = {id(p): g for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert by_param[id(named["features.conv1.weight"])]["weight_decay"] == 0.004
    assert by_param[id(named["classifier.fc10.weight"])]["weight_decay"] == 1.0
    assert by_param[id(named["classifier.fc10.bias"])]["weight_decay"] == 0.0
    assert by_param[id(named["classifier.fc10.bias"])]["lr_scale"] == 2.0
    with pytest.raises(UserError, match="no layer named 'fc99'"):
        make_optimizer(TrainConfig(model="cifar_18pct", weight_decay_layers={"fc99": 1.0}), model)
    with pytest.raises(UserError, match="milestones"):
        TrainConfig(schedule="multistep").validate()


def test_val_split_is_disjoint_from_training_and_fixed_by_the_seed(tiny_folder: Path) -> None:
    """--val-split: the held-out images never reach the training set, the split depends on the seed
    only (the same in every build: a resume rebuilds it, each torchrun process builds it before its
    shard is taken), and the dataset's test split is build_test's."""
    from alexnet.engine.data import build_data, build_test

    def files(ds) -> list[str]:
        return [p for p, _ in ds.samples]

    # a tiny cache limit: the folder is read from disk, so each image keeps its path
    folder = dict(model="cifar_80sec", data=str(tiny_folder), workers=0, cache_limit_gb=1e-9)
    cfg = TrainConfig(**folder, val_split=0.2)
    train_ds, val_ds, classes, t = build_data(cfg)
    again = build_data(cfg)
    assert len(val_ds) == 36 and len(train_ds) == 144  # 20% of 180
    assert not set(files(train_ds)) & set(files(val_ds))
    assert files(again[0]) == files(train_ds) and files(again[1]) == files(val_ds)
    assert all("/train/" in p for p in files(val_ds))
    other = build_data(TrainConfig(**folder, val_split=0.2, seed=1))
    assert files(other[1]) != files(val_ds)
    test = build_test(cfg, classes, t)
    assert len(test) == 60 and all("/val/" in p for p in files(test))
    assert build_test(TrainConfig(**folder), classes, t) is None
    # with a training subset, the held-out images stay out of it
    sub = build_data(TrainConfig(**folder, val_split=0.2, max_train_images=50))
    assert len(sub[0]) == 50 and files(sub[1]) == files(val_ds) and not set(files(sub[0])) & set(files(val_ds))
    # two processes' shards of the training loader cover the rest, never a held-out image
    shards = [BatchLoader(train_ds, 16, shuffle=True, seed=0, workers=0, rank=r, world_size=2) for r in (0, 1)]
    seen = set()
    for loader in shards:
        loader.set_epoch(0)
        seen |= {files(train_ds)[i] for b in loader.batch_indices() for i in b.tolist()}
    assert seen == set(files(train_ds))
    with pytest.raises(UserError, match="val-split"):
        TrainConfig(val_split=1.0).validate()


def test_a_val_split_run_selects_on_held_out_images_and_tests_once(tiny_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "split"
    cfg = TrainConfig(
        model="cifar_80sec",
        data=str(tiny_folder),
        out=str(out),
        epochs=2,
        batch_size=32,
        lr=0.05,
        schedule="constant",
        model_options={"init": "torch"},
        workers=0,
        val_split=0.2,
    )
    result = train(cfg, progress=False, log=lambda s: None)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["val_images"]) for r in rows] == [36, 36]
    assert [int(r["test_images"]) for r in rows] == [0, 60]  # the test split: once, at the end
    assert math.isnan(float(rows[0]["test_top1_error"]))
    assert result.test is not None and float(rows[1]["test_top1_error"]) == pytest.approx(result.test.top1_error)
    # resumed for a third epoch: the same held-out images (the same count, the same config)
    train(TrainConfig.from_recipe(out / "config.toml", resume=True, epochs=3), progress=False, log=lambda s: None)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["val_images"]) for r in rows] == [36, 36, 36] and int(rows[2]["test_images"]) == 60
