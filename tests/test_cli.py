"""The command line: models, train, evaluate --json, predict on every odd image kind, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from alexnet.cli import main

from .test_images import bad_images, odd_images


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_lists_every_network(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models")
    assert code == 0
    assert "60,965,224" in out and "61,100,840" in out and "60,000" in out and "3x224x224" in out


def test_models_name_prints_the_layer_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "lenet5")
    assert code == 0 and "16x10x10" in out and "1,516" in out
    code, out, _ = run(capsys, "models", "alexnet", "--model-opt", "columns=1")
    assert "96x55x55" in out and "conv2" in out


def test_user_mistakes_are_one_line_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for argv, needle in [
        (["models", "alexnte"], "unknown model"),
        (["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r")], "no such file"),
        (["train", "--recipe", str(tmp_path / "nope.toml")], "--recipe"),
        (["train", "--data", "x", "--out", "y", "--precision", "fp8"], "precision"),
        (["evaluate", str(tmp_path), "--data", "mnist"], "not a run folder"),
        (["predict", str(tmp_path / "missing.pt"), "x.jpg"], "no such checkpoint"),
    ]:
        code, _, err = run(capsys, *argv)
        assert code == 2, argv
        assert needle in err and err.count("\n") == 1 and "Traceback" not in err, (argv, err)


def test_train_cli_end_to_end(capsys: pytest.CaptureFixture[str], tiny_folder: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        'model = "cifar_18pct"\nepochs = 5\nbatch_size = 16\nlr = 0.02\nschedule = "constant"\n'
        '[model_options]\ninit = "torch"\n'
    )
    code, out, err = run(
        capsys,
        "train",
        "--recipe",
        str(recipe),
        "--data",
        str(tiny_folder),
        "--out",
        str(tmp_path / "run"),
        "--epochs",
        "2",
        "--workers",
        "0",
        "--model-opt",
        'lrn="none"',
        "--no-flip",
    )
    assert code == 0, err
    assert "best val top-1 error" in out and "alexnet predict" in out
    cfg = (tmp_path / "run" / "config.toml").read_text()
    assert "epochs = 2" in cfg and "flip = false" in cfg and 'lrn = "none"' in cfg and "lr = 0.02" in cfg


def test_evaluate_json(capsys: pytest.CaptureFixture[str], trained_run: Path, tiny_folder: Path) -> None:
    code, out, _ = run(capsys, "evaluate", str(trained_run), "--data", str(tiny_folder), "--json")
    assert code == 0
    d = json.loads(out)
    assert d["n"] == 60 and 0 <= d["top1_error"] <= 1 and 0 <= d["top5_error"] <= d["top1_error"]
    assert d["top_k"] == 3 and d["top5_error"] == 0.0  # three classes: the "top-5" holds all of them
    assert Path(d["confusion_png"]).is_file()
    code, out, _ = run(capsys, "evaluate", str(trained_run / "last.pt"), "--data", str(tiny_folder))
    assert code == 0 and "top-1 error" in out and "per-class accuracy" in out and "blue" in out


def test_evaluate_in_the_runs_own_precision_gives_its_validation_figure(
    capsys: pytest.CaptureFixture[str], trained_run: Path, tiny_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default ``--precision run`` and an explicit fp32 (the run's) reproduce the best epoch's
    validation error from metrics.csv exactly; bf16 is another measurement (on a CPU that emulates
    it, said on stderr, the JSON on stdout intact); a bad value is refused."""
    import csv

    import torch

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)

    rows = list(csv.DictReader(open(trained_run / "metrics.csv")))
    best = min(float(r["val_top1_error"]) for r in rows)
    for extra in ([], ["--precision", "fp32"]):
        code, out, err = run(capsys, "evaluate", str(trained_run), "--data", str(tiny_folder), "--json", *extra)
        assert code == 0, err
        assert json.loads(out)["top1_error"] == pytest.approx(best, abs=1e-6)
    code, out, err = run(
        capsys, "evaluate", str(trained_run), "--data", str(tiny_folder), "--json", "--precision", "bf16"
    )
    assert code == 0 and 0 <= json.loads(out)["top1_error"] <= 1, err
    assert "--precision bf16: this CPU has no native bf16 kernels" in err
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(trained_run), "--data", str(tiny_folder), "--precision", "fp8"])
    assert e.value.code == 2 and "--precision" in capsys.readouterr().err


def test_evaluate_resize_crop_and_interpolation_are_torchvisions_resize_then_centre_crop(
    capsys: pytest.CaptureFixture[str], trained_run: Path, tiny_folder: Path
) -> None:
    """--resize-size R --crop-size C is torchvision's Resize(R) then CenterCrop(C) on the Pillow image
    (the figure recomputed that way); the checkpoint's own sizes give its own figure; a crop larger
    than the resize, or one the network cannot take, is one line naming --crop-size."""
    import torch
    from PIL import Image
    from torchvision.transforms import v2

    from alexnet import load

    def top1(*extra: str) -> dict:
        code, out, err = run(capsys, "evaluate", str(trained_run), "--data", str(tiny_folder), "--json", *extra)
        assert code == 0, err
        return json.loads(out)

    own = top1()
    same = top1("--resize-size", "32", "--crop-size", "32", "--interpolation", "bilinear")
    assert same["top1_error"] == own["top1_error"] and same["loss"] == pytest.approx(own["loss"], rel=1e-6)
    for how in ("bilinear", "bicubic"):
        got = top1("--resize-size", "40", "--crop-size", "32", "--interpolation", how)
        assert (got["resize_size"], got["crop_size"], got["interpolation"]) == (40, 32, how)
        clf = load(trained_run, device="cpu")
        t = clf.transform
        mode = v2.InterpolationMode.BILINEAR if how == "bilinear" else v2.InterpolationMode.BICUBIC
        ref = v2.Compose([v2.Resize(40, interpolation=mode), v2.CenterCrop(32), v2.PILToTensor()])
        files = sorted((tiny_folder / "val").rglob("*.png"))
        x = torch.stack([ref(Image.open(f).convert("RGB")) for f in files]).float()
        x = (x - torch.tensor(t.mean).view(1, 3, 1, 1)) / torch.tensor(t.std).view(1, 3, 1, 1)
        labels = torch.tensor([clf.classes.index(f.parent.name) for f in files])
        with torch.no_grad():
            loss = torch.nn.functional.cross_entropy(clf.model(x), labels).item()
        assert got["loss"] == pytest.approx(loss, rel=1e-4), how
    for extra, why in (
        (["--resize-size", "24"], "larger than the 24x24"),
        (["--resize-size", "48", "--crop-size", "40"], "cannot take 40x40"),
    ):
        code, _, err = run(capsys, "evaluate", str(trained_run), "--data", str(tiny_folder), *extra)
        assert code == 2 and "--crop-size" in err and why in err and err.count("\n") == 1, err


def test_predict_every_odd_image_kind(capsys: pytest.CaptureFixture[str], trained_run: Path, tmp_path: Path) -> None:
    odd = odd_images(tmp_path / "odd")
    code, out, err = run(capsys, "predict", str(trained_run), str(tmp_path / "odd"), "--top-k", "2", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert {Path(p["path"]).name for p in d["predictions"]} == {p.name for p in odd.values()}
    for p in d["predictions"]:
        assert len(p["top"]) == 2 and p["top"][0]["prob"] >= p["top"][1]["prob"]
        assert p["top"][0]["label"] in ("blue", "green", "red")
    assert d["errors"] == []


def test_predict_takes_files_after_options(
    capsys: pytest.CaptureFixture[str], trained_run: Path, tmp_path: Path
) -> None:
    odd = odd_images(tmp_path / "odd")
    a, b = str(odd["rgb_jpeg"]), str(odd["grayscale"])
    code, out, err = run(capsys, "predict", str(trained_run), a, "--top-k", "2", b, "--json")
    assert code == 0, err
    assert [p["path"] for p in json.loads(out)["predictions"]] == [a, b]
    with pytest.raises(SystemExit) as e:
        main(["predict", str(trained_run), "--top-k", "2", a, "--no-such-flag"])
    assert e.value.code == 2 and "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_predict_reports_bad_files_and_classifies_the_rest(
    capsys: pytest.CaptureFixture[str], trained_run: Path, tmp_path: Path
) -> None:
    bad = bad_images(tmp_path / "bad")
    good = odd_images(tmp_path / "good")["rgb_jpeg"]
    code, out, err = run(
        capsys,
        "predict",
        str(trained_run),
        str(bad["text"]),
        str(good),
        str(bad["truncated"]),
        str(bad["bomb"]),
        str(bad["empty"]),
    )
    assert code == 1
    assert good.name in out and "1." in out
    lines = err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("alexnet: error: ") for line in lines)
    assert "notes_named.jpg: not an image" in err and "decompression bomb" in err and "Traceback" not in err


def test_predict_red_image_says_red(trained_run: Path, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    import alexnet

    a = np.zeros((50, 80, 3), np.uint8)
    a[..., 0] = 200
    Image.fromarray(a).save(tmp_path / "red.png")
    clf = alexnet.load(trained_run)
    (p,) = clf.predict([tmp_path / "red.png"], top_k=3)
    assert p.labels[0] == "red" and abs(sum(p.probs) - 1) < 1e-4


def test_console_script_runs_as_a_module() -> None:
    r = subprocess.run([sys.executable, "-m", "alexnet", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "alexnet" in r.stdout


def test_demo_runs_end_to_end(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "demo", "--out", str(tmp_path / "demo"), "--epochs", "1")
    assert code == 0, err
    assert "top-1 error" in out and "top-5 error" in out and "airplane/" in out and "next:" in out
    assert (tmp_path / "demo" / "best.pt").is_file() and (tmp_path / "demo" / "curves.png").is_file()


def test_list_and_table_options_are_flags_as_the_readme_shows(
    capsys: pytest.CaptureFixture[str], tiny_folder: Path, tmp_path: Path
) -> None:
    # every config key is a flag, the list and table ones in TOML syntax
    code, _, err = run(
        capsys,
        "train",
        "--model",
        "cifar_18pct",
        "--data",
        str(tiny_folder),
        "--out",
        str(tmp_path / "r"),
        "--epochs",
        "1",
        "--workers",
        "0",
        "--schedule",
        "multistep",
        "--milestones",
        "[1, 2]",
        "--weight-decay-layers",
        "{fc10 = 1.0}",
    )
    assert code == 0, err
    config = (tmp_path / "r" / "config.toml").read_text()
    assert "milestones = [1, 2]" in config and "fc10 = 1.0" in config


def test_a_bad_flag_value_is_one_line_not_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["train", "--epochs", "many"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("alexnet: error: ") and "--epochs" in err


def test_a_closed_pipe_is_not_a_traceback() -> None:
    # `alexnet models | head -1`: the reader leaves after one line
    p = subprocess.run(
        f"{sys.executable} -m alexnet models | head -1", shell=True, capture_output=True, text=True, timeout=120
    )
    assert p.stdout.startswith("model") and "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr


def test_models_shows_the_options_it_was_given(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "alexnet", "--model-opt", "columns=1", "--model-opt", "width=0.5")
    options = next(line for line in out.splitlines() if line.startswith("options:"))
    assert "columns=1 (given)" in options and "width=0.5 (given)" in options and "59,798,312" in out
