"""One run per folder, and outputs that are never destroyed (reliability, round two: files and runs).

A run folder belongs to one process for that process's life (a kernel lock, released however the
process ends): a second ``train`` into the same ``--out``, or a second ``--resume`` of a run, is refused
in one line before any work; a lock left by a dead process is taken over and said so. A run refused
before its first file leaves no empty folder behind."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from alexnet.cli import main


def slow_run(folder: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    """``alexnet train`` in a child process, slowed down so that it is still running when we look."""
    code = (
        "import sys, time; import alexnet.engine.step as s; real = s.TrainStep.update\n"
        "def slow(self): time.sleep(0.2); real(self)\n"
        "s.TrainStep.update = slow\n"
        "from alexnet.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            "train",
            "--model",
            "cifar_80sec",
            "--data",
            str(folder),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--batch-size",
            "16",
            "--workers",
            "0",
            "--model-opt",
            "init=torch",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, proc: subprocess.Popen[str], seconds: float = 120, text: str = "") -> None:
    """Until ``path`` exists (and holds ``text``), while ``proc`` runs."""
    deadline = time.monotonic() + seconds
    while not (path.exists() and text in path.read_text(errors="replace")):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_a_second_train_into_the_same_new_folder_is_refused(capsys, tiny_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "dup"
    first = slow_run(tiny_folder, out)
    try:
        wait_for(out / "config.toml", first)
        code = main(
            [
                "train",
                "--model",
                "cifar_80sec",
                "--data",
                str(tiny_folder),
                "--out",
                str(out),
                "--epochs",
                "1",
                "--workers",
                "0",
            ]
        )
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "in use by alexnet process" in err and str(first.pid) in err
    finally:
        assert first.wait(timeout=300) == 0, first.stderr.read() if first.stderr else ""
    assert (out / "best.pt").is_file() and len(list((out / "tensorboard").iterdir())) == 1  # one run's files


def test_a_second_resume_of_a_run_is_refused(capsys, tiny_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--model",
                "cifar_80sec",
                "--data",
                str(tiny_folder),
                "--out",
                str(out),
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--workers",
                "0",
                "--model-opt",
                "init=torch",
            ]
        )
        == 0
    )
    assert "took over" not in capsys.readouterr().err  # a clean end leaves no holder behind
    first = slow_run(tiny_folder, out, "--resume")
    try:
        wait_for(out / ".lock", first, text=f"process {first.pid} ")  # it holds the lock
        capsys.readouterr()
        code = main(["train", "--resume", str(out), "--epochs", "3"])
        err = capsys.readouterr().err
        assert code == 2 and "in use by alexnet process" in err and err.count("\n") == 1
    finally:
        assert first.wait(timeout=300) == 0, first.stderr.read() if first.stderr else ""


def test_a_lock_left_by_a_dead_process_is_taken_over(capsys, tiny_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("alexnet process 99999999 on elsewhere")  # no process holds it
    assert (
        main(
            [
                "train",
                "--model",
                "cifar_80sec",
                "--data",
                str(tiny_folder),
                "--out",
                str(out),
                "--epochs",
                "1",
                "--workers",
                "0",
                "--model-opt",
                "init=torch",
            ]
        )
        == 0
    )
    assert "took over the lock left by alexnet process 99999999" in capsys.readouterr().err


def test_a_run_refused_before_its_first_file_leaves_no_folder(capsys, tmp_path: Path) -> None:
    out = tmp_path / "never"
    assert main(["train", "--model", "cifar_80sec", "--data", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert not out.exists()


# ------------------------------------------------------------------------------ outputs never destroyed


def test_features_never_overwrites_without_force_and_writes_exactly_the_name(
    capsys, trained_run: Path, tiny_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "feats.npz"
    out.write_bytes(b"precious")
    args = ["features", str(trained_run), "--data", str(tiny_folder), "--max-images", "8", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "already exists; --force replaces it" in err and out.read_bytes() == b"precious"
    assert main(args + ["--force"]) == 0 and out.read_bytes()[:2] == b"PK"  # an .npz (a zip) now
    pt = tmp_path / "x.pt"
    assert main(["features", str(trained_run), "--data", str(tiny_folder), "--max-images", "4", "--out", str(pt)]) == 0
    assert pt.is_file() and not (tmp_path / "x.pt.npz").exists() and f"wrote {pt}:" in capsys.readouterr().out


def test_a_failed_write_leaves_the_old_output_whole(
    capsys, trained_run: Path, tiny_folder: Path, tmp_path: Path, monkeypatch
) -> None:
    import errno

    import numpy as np

    out = tmp_path / "feats.npz"
    out.write_bytes(b"precious")

    def full_disk(f, **arrays):  # type: ignore[no-untyped-def]
        f.write(b"half of it")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    assert (
        main(
            [
                "features",
                str(trained_run),
                "--data",
                str(tiny_folder),
                "--max-images",
                "4",
                "--out",
                str(out),
                "--force",
            ]
        )
        == 2
    )
    assert "No space left" in capsys.readouterr().err and out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feats.npz"]  # no temporary left either


def test_pictures_and_evaluations_refuse_to_replace_an_output_the_user_named(
    capsys, trained_run: Path, tiny_folder: Path, tmp_path: Path
) -> None:
    png = tmp_path / "k.png"
    png.write_bytes(b"mine")
    assert main(["visualize", "kernels", str(trained_run), "--out", str(png)]) == 2
    assert (
        main(
            [
                "neighbors",
                str(trained_run),
                "--query",
                str(next(tiny_folder.rglob("*.png"))),
                "--data",
                str(tiny_folder),
                "--out",
                str(png),
            ]
        )
        == 2
    )
    assert png.read_bytes() == b"mine"
    assert main(["visualize", "kernels", str(trained_run), "--out", str(png), "--force"]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / "result.json").write_text("{}")
    assert main(["evaluate", str(trained_run), "--data", str(tiny_folder), "--out", str(ev)]) == 2
    assert (ev / "result.json").read_text() == "{}"
    assert main(["evaluate", str(trained_run), "--data", str(tiny_folder), "--out", str(ev), "--force"]) == 0
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("alexnet: error")]
    assert len(errors) == 3 and all("--force replaces it" in e for e in errors)
    assert main(["visualize", "kernels", str(trained_run), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "not an image file name" in capsys.readouterr().err


def test_export_and_weights_to_a_place_that_cannot_be_written_are_one_line(
    capsys, trained_run: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["export", str(trained_run), "--format", "safetensors", "--out", str(blocker / "exp")]) == 2
    assert main(["export", str(trained_run), "--format", "safetensors", "--out", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # nothing half-made beside it


# ------------------------------------------------------------------------------ bounded work, one line


def test_neighbours_k_is_bounded_by_the_picture_and_the_data(
    capsys, trained_run: Path, tiny_folder: Path, tmp_path: Path
) -> None:
    query = str(next(tiny_folder.rglob("*.png")))
    assert main(["neighbors", str(trained_run), "--query", query, "--data", str(tiny_folder), "--k", "100000"]) == 2
    assert "at most 32" in capsys.readouterr().err
    assert (
        main(
            [
                "neighbors",
                str(trained_run),
                "--query",
                query,
                "--data",
                str(tiny_folder),
                "--k",
                "20",
                "--max-images",
                "7",
                "--json",
                "--out",
                str(tmp_path / "n.png"),
            ]
        )
        == 0
    )
    import json

    r = json.loads(capsys.readouterr().out)
    assert len(r["queries"][0]["neighbours"]) == 7  # no more neighbours than images searched


def test_a_decoder_failing_in_any_way_is_a_skipped_file(capsys, trained_run: Path, tmp_path: Path, monkeypatch) -> None:
    import numpy as np
    from PIL import Image

    from .conftest import make_image

    good, bad = tmp_path / "good.png", tmp_path / "bad.jpg"
    make_image(2, np.random.default_rng(0)).save(good)
    bad.write_bytes(b"\x00\x00\x00\x1cftypavif" + b"\x00" * 64)  # an AVIF header named .jpg, then garbage
    real_open = Image.open

    def plugin_crash(fp, *a, **k):  # type: ignore[no-untyped-def]
        if str(fp).endswith("bad.jpg"):
            raise RuntimeError("avif decoder: corrupt item")  # what a plugin may raise: not OSError
        return real_open(fp, *a, **k)

    monkeypatch.setattr(Image, "open", plugin_crash)
    assert main(["predict", str(trained_run), str(good), str(bad)]) == 1
    out, err = capsys.readouterr()
    assert "good.png" in out and "bad.jpg: unreadable image (RuntimeError: avif decoder: corrupt item)" in err


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["evaluate", "RUN", "--data", "DATA", "--max-images", "0"], "--max-images: must be at least 1, not 0"),
        (["evaluate", "RUN", "--data", "DATA", "--max-images", "-3"], "--max-images: must be at least 1, not -3"),
        (["evaluate", "RUN", "--data", "DATA", "--batch-size", "0"], "--batch-size: must be at least 1, not 0"),
        (["features", "RUN", "--data", "DATA", "--batch-size", "-1", "--json"], "--batch-size: must be at least 1"),
    ],
)
def test_nonsense_numbers_are_refused_by_the_parser(capsys, argv: list[str], needle: str) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and needle in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "flags,needle",
    [
        (["--lr", "inf"], "lr: must be a finite number, not inf"),
        (["--momentum", "nan"], "momentum: must be a finite number, not nan"),
        (["--model-opt", "dropout=yes"], "option dropout takes a float like its default 0.0, not 'yes'"),
    ],
)
def test_nonsense_config_values_name_their_key(
    capsys, tiny_folder: Path, tmp_path: Path, flags: list[str], needle: str
) -> None:
    assert (
        main(["train", "--model", "cifar_80sec", "--data", str(tiny_folder), "--out", str(tmp_path / "r"), *flags]) == 2
    )
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") <= 2  # the recipe line, then the error


def test_features_of_no_images_is_an_error(capsys, trained_run: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["features", str(trained_run), str(tmp_path / "empty"), "--out", str(tmp_path / "f.npz")]) == 2
    assert "no readable images" in capsys.readouterr().err and not (tmp_path / "f.npz").exists()


def test_weights_with_nan_are_not_labelled_torchvisions(capsys, tmp_path: Path) -> None:
    import torch
    from torchvision.models import alexnet as tv_alexnet

    state = tv_alexnet(weights=None).state_dict()
    state["features.0.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "w.pth")
    assert main(["weights", "torchvision", "--out", str(tmp_path / "tv"), "--file", str(tmp_path / "w.pth")]) == 2
    assert "NaN or infinite" in capsys.readouterr().err and not (tmp_path / "tv").exists()


def test_file_names_with_control_characters_are_printed_escaped(capsys, trained_run: Path, tmp_path: Path) -> None:
    import numpy as np

    from .conftest import make_image

    name = tmp_path / "evil\n\x1b[31mname.png"
    make_image(0, np.random.default_rng(0)).save(name, format="PNG")
    assert main(["predict", str(trained_run), str(name)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "evil\\n\\x1b[31mname.png" in out


@pytest.mark.parametrize("text", ["inf", "nan", "-1MB", "0", "lots"])
def test_serve_max_bytes_must_be_a_size(text: str) -> None:
    from alexnet.errors import UserError
    from alexnet.server.options import parse_size

    with pytest.raises(UserError, match="--max-bytes"):
        parse_size(text)
    assert parse_size("20MB") == 20 * 2**20
