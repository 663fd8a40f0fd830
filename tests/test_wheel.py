"""A wheel is a working install: built from the checkout, installed outside it, its shipped recipes and
demo sample found as package data (``importlib.resources``), ``python -m alexnet`` runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The wheel built (no network: this environment's setuptools) and unpacked into a folder outside
    the checkout; the environment that puts it first on the path."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"  # a copy, so that the build writes nothing into the checkout
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(base / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=base,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = (base / "dist").glob("alexnet-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "alexnet/recipes/lenet5_mnist.toml",
        "alexnet/recipes/demo.toml",
        "alexnet/sample/cifar10-sample.tar.gz",
        "alexnet/server/page.html",
        "alexnet/models/csrc/rnorm.cpp",
        "alexnet/data/imagenet_wnids.txt",
    ):
        assert needed in names, f"{needed} is not in the wheel"
    # the test helpers live in tests/support, not in the installed package
    assert not any(n.startswith(("alexnet/testing", "tests/")) for n in names), sorted(names)[:5]
    target = base / "site"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    env = {**os.environ, "PYTHONPATH": str(target), "ALEXNET_CACHE": str(base / "cache")}
    return base, env


def run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alexnet", *args], capture_output=True, text=True, timeout=600, cwd=cwd, env=env
    )


def test_the_installed_wheel_runs_the_demo_and_a_shipped_recipe(
    installed: tuple[Path, dict[str, str]], tiny_folder: Path
) -> None:
    base, env = installed
    where = subprocess.run(
        [sys.executable, "-c", "import alexnet; print(alexnet.__file__)"],
        capture_output=True,
        text=True,
        cwd=base,
        env=env,
    )
    assert where.stdout.strip().startswith(str(base / "site")), where  # the wheel's copy, not the checkout's
    r = run(env, base, "demo", "--epochs", "1", "--out", "demo-run")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "held-out test images" in r.stdout and (base / "demo-run" / "best.pt").is_file()
    r = run(
        env,
        base,
        "train",
        "--recipe",
        "cifar_18pct_cifar10",
        "--data",
        str(tiny_folder),
        "--epochs",
        "1",
        "--workers",
        "0",
        "--out",
        "recipe-run",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert (base / "recipe-run" / "config.toml").read_text().count('model = "cifar_18pct"') == 1
