"""The README and the manual in docs/ are tested documentation: their commands and Python snippets run
as a reader would run them.

Every line of the ``bash`` blocks of the README and of every ``docs/*.md`` page is either run here or
named in ``NOT_RUN`` with the reason (a new line that is neither fails
``test_every_readme_command_is_run_or_has_a_reason``). They run in the order a reader meets them
(``PAGES``: the README, then the manual's pages; a command shown on two pages runs once), in a
working folder laid out as the README assumes: ``../shared/data``
holds small stand-in copies of MNIST (IDX files) and CIFAR-10 (a train/test image tree), and the
files a command names (``photo.jpg``, ``my_photos/``, torchvision's ``alexnet-owt-7be5be79.pth``,
``/data/imagenet``) exist as small generated stand-ins. Each command's exit status is checked, and
the files or fields it promises. Training commands get ``--epochs 2`` appended (the recipes' full
length is not what is tested here; the recipes' figures are in the README's Results).
"""

from __future__ import annotations

import json
import re
import shlex
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from .conftest import make_folder, make_image

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# the reading order: the README, then the manual (every docs/*.md page is here: a test checks it)
PAGES = [README] + [
    ROOT / "docs" / f"{name}.md"
    for name in (
        "training",
        "config",
        "data",
        "long-runs",
        "using-models",
        "serving",
        "performance",
        "reliability",
        "paper",
        "models",
        "architecture",
        "testing",
    )
]

# lines that are not run here, each with the reason
NOT_RUN = {
    "make install": "every suite's first step (the Makefile's $(STAMP))",
    "make demo": "tested by test_cli's demo test and the wheel test",
    "make test": "this suite",
    "make lint": "CI runs it first (.ci/run)",
    "alexnet serve runs/lenet5 --port 8000": "a server that runs until stopped: test_serve runs it on a free port",
    "alexnet train --model alexnet --data /data/imagenet --out runs/alexnet --epochs 90 --precision bf16": (
        "the paper's AlexNet on ImageNet: days; the recipe and the model are tested on their own"
    ),
    "alexnet train --recipe alexnet_imagenet --data /data/imagenet-256 --out runs/alexnet": "ImageNet: days",
    "alexnet train --recipe alexnet_imagenet --data /data/imagenet-jpeg --random-resized-crop --out runs/rrc": (
        "the line above with RandomResizedCrop (test_shards trains with it from a shorter pack)"
    ),
    "alexnet weights torchvision --out runs/alexnet-tv": "downloads (network marker: test_share)",
    "alexnet serve runs/cifar": "a server that runs until stopped: test_serve runs it on a free port",
    "alexnet serve runs/alexnet-tv --host 0.0.0.0 --port 8080 --workers 2 --max-batch 64": (
        "binds every interface; test_serve runs --workers on loopback"
    ),
    "alexnet serve runs/cifar --onnx": "test_serve's ONNX test",
    "alexnet bench train --model alexnet alexnet_tv --precision bf16 --data PACKED --jpeg-dir PHOTOS": (
        "a benchmark of minutes (test_bench runs it at toy size)"
    ),
    "python benchmarks/train_throughput.py": "a benchmark of minutes",
    "benchmarks/gpu.sh": "needs a GPU (its --smoke form runs in CI)",
    "alexnet experiment lrn --data cifar10:../shared/data --out runs/paper/lrn": (
        "an hour and a half (scaled down: test_experiments)"
    ),
    "alexnet experiment lenet5 --data mnist:../shared/data --out runs/paper/lenet5 --seeds 5": "an hour",
    "alexnet report runs/paper/*/ --out runs/paper/report.md": "needs the experiments above (test_experiments)",
    "make experiments": "hours",
    "make test-faults": "CI runs it",
    "make test-load": "CI runs it",
    "make test-realdata": "CI runs it",
    "make test-triton": "CI runs it",
    "make gpu-smoke": "CI runs it",
    ".venv/bin/python -m pytest -m slow": "minutes: torch.compile, torchrun",
    ".venv/bin/python -m pytest -m network": "needs the internet",
}
NOT_RUN_PREFIXES = {
    "torchrun ": "several processes or nodes (test_distributed runs torchrun on the CPU)",
    "srun ": "SLURM",
    "curl ": "needs a running server (test_serve sends these requests)",
    "sbatch ": "SLURM",
}


def readme_blocks(lang: str, pages: list[Path] | None = None) -> list[str]:
    """The ``lang`` code blocks of ``pages`` (default: every page, in reading order)."""
    return [
        block
        for page in pages or PAGES
        for block in re.findall(rf"^```{lang}\n(.*?)^```", page.read_text(), flags=re.S | re.M)
    ]


def readme_commands() -> list[str]:
    """The pages' shell lines, in reading order, each once: continuations joined, comments and blank
    lines dropped."""
    out: list[str] = []
    for block in readme_blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            line = re.sub(r"\s+", " ", line)
            if line and not line.startswith("#") and line not in out:
                out.append(line)
    return out


# ------------------------------------------------------------------------------------ stand-in data


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file (MNIST's format): magic (0, 0, type 0x08 = ubyte, dims), big-endian sizes, data."""
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def make_mnist(root: Path, train: int = 192, test: int = 64) -> None:
    """Digits that are learnable: class k is a bar at row 2k+4 on noise."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28))
        for i, y in enumerate(labels):
            images[i, 2 * y + 4 : 2 * y + 7, 4:24] = 250
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)


CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
WNIDS = ["n01440764", "n01443537", "n01484850"]  # tench, goldfish, great white shark


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reader's working folder (returned), with ../shared/data and the files the README names."""
    base = tmp_path_factory.mktemp("reader")
    data = base / "shared" / "data"
    make_mnist(data)
    make_folder(data / "cifar10", {"train": 8, "test": 4}, classes=CIFAR)
    work = base / "work"
    work.mkdir()
    rng = np.random.default_rng(2)
    make_image(0, rng, (320, 240)).save(work / "photo.jpg")
    Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(work / "digit.png")
    (work / "more_photos").mkdir()
    for i in range(2):
        make_image(i, rng, (64, 48)).save(work / "more_photos" / f"p{i}.jpg")
    for name in ("a.jpg", "b.jpg"):
        make_image(1, rng).save(work / name)
    (work / "docs" / "figures" / "queries").mkdir(parents=True)
    for i in range(2):
        make_image(i, rng).save(work / "docs" / "figures" / "queries" / f"q{i}.jpg")
    make_folder(work / "my_photos", {"train": 4, "val": 2}, size=(80, 60), classes=["cat", "dog"], suffix=".jpg")
    # torchvision's AlexNet state dict, as torchvision saves it (random weights: the README's file is 233 MB)
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), work / "alexnet-owt-7be5be79.pth")
    # an ImageNet-style tree of three WNIDs (/data/imagenet in the README)
    make_folder(base / "imagenet", {"train": 2, "val": 2}, size=(300, 200), classes=WNIDS, suffix=".JPEG")
    return work


def substitute(cmd: str, work: Path) -> str:
    """The README's placeholders and absolute paths as a reader replaces them."""
    base = work.parent
    cmd = re.sub(r"\bRUN\b", "runs/cifar", cmd)
    return (
        cmd.replace("/data/imagenet-256", str(base / "imagenet-256"))
        .replace("/data/imagenet", str(base / "imagenet"))
        .replace("[--k 6]", "--k 6")
        .replace("--data SPEC", "--data cifar10:../shared/data")
        .replace("--workers 16", "--workers 2")
    )


# --------------------------------------------------------------------------- what each command promises


def files(*names: str) -> Callable[[Path, str], None]:
    def check(work: Path, out: str) -> None:
        for n in names:
            assert (work / n).exists(), f"{n} was not written"

    return check


def printed(*texts: str) -> Callable[[Path, str], None]:
    def check(work: Path, out: str) -> None:
        for t in texts:
            assert t in out, f"{t!r} not in the output"

    return check


def strict_json_config(work: Path, out: str) -> None:
    text = (work / "exports/cifar/config.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"config.json holds {c}, which is not JSON"))


def wnid_evaluation(work: Path, out: str) -> None:
    assert "on 6 images" in out or "6 images" in out, out
    assert "tench" in out and "goldfish" in out  # per-class lines by name, the classes the data has


RUN = {  # command -> check, in README order
    "alexnet train --recipe lenet5_mnist --data mnist:../shared/data --out runs/lenet5": files(
        *(
            f"runs/lenet5/{f}"
            for f in ("best.pt", "last.pt", "metrics.csv", "curves.png", "confusion.png", "config.toml")
        )
    ),
    "alexnet train --recipe cifar_18pct_cifar10 --data cifar10:../shared/data --out runs/cifar": files(
        "runs/cifar/best.pt", "runs/cifar/metrics.csv"
    ),
    "alexnet evaluate runs/lenet5 --data mnist:../shared/data": lambda w, o: (
        printed("top-1 error", "top-5 error", "per-class accuracy")(w, o),
        files("runs/lenet5/evaluate/result.json", "runs/lenet5/evaluate/confusion.png")(w, o),
    ),
    "alexnet predict runs/lenet5 digit.png --top-k 3": printed("digit.png", "  3. "),
    "alexnet predict runs/cifar photo.jpg more_photos/ --top-k 5": printed("photo.jpg", "p0.jpg", "p1.jpg", "  5. "),
    "alexnet weights torchvision --out runs/alexnet-tv --file alexnet-owt-7be5be79.pth": files(
        "runs/alexnet-tv/best.pt", "runs/alexnet-tv/classes.txt"
    ),
    "alexnet predict runs/alexnet-tv photo.jpg": printed("photo.jpg", "  1. "),
    "alexnet export runs/cifar --format safetensors --out exports/cifar": lambda w, o: (
        files("exports/cifar/model.safetensors", "exports/cifar/config.json", "exports/cifar/README.md")(w, o),
        strict_json_config(w, o),
    ),
    "alexnet features runs/cifar --data cifar10:../shared/data --layer last --out feats.npz": files("feats.npz"),
    "alexnet features runs/alexnet-tv photo.jpg --layer fc7 --json": printed('"layer": "fc7"', '"vector"'),
    "alexnet train --recipe finetune --init runs/alexnet-tv --data my_photos/ --out runs/mine --freeze features": (
        files("runs/mine/best.pt")
    ),
    "alexnet export runs/cifar --format onnx": files("runs/cifar/model.onnx"),
    "alexnet predict --onnx runs/cifar/model.onnx photo.jpg": printed("photo.jpg", "  1. "),
    "alexnet prepare /data/imagenet /data/imagenet-jpeg --format jpeg --shape shorter --workers 16": printed(
        "next: alexnet train"
    ),
    "alexnet prepare --verify /data/imagenet-jpeg": printed("every shard matches its manifest"),
    "alexnet train --recipe alexnet_imagenet --data /data/imagenet-jpeg --out runs/alexnet": files(
        "runs/alexnet/best.pt", "runs/alexnet/metrics.csv"
    ),
    "alexnet evaluate runs/alexnet --data /data/imagenet-jpeg --ten-crop": printed("top-1 error", "tench"),
    "alexnet prepare /data/imagenet /data/imagenet-256 --workers 16": printed("next: alexnet train"),
    "alexnet evaluate runs/alexnet-tv --data /data/imagenet-256 --ten-crop": wnid_evaluation,
    "alexnet experiment list": printed("relu-vs-tanh", "lrn"),
    "alexnet visualize kernels RUN": files("runs/cifar/kernels.png"),
    "alexnet neighbors RUN --query a.jpg b.jpg --data SPEC [--k 6]": files("runs/cifar/neighbors.png"),
    "alexnet visualize kernels RUN --out docs/figures/kernels_cifar_18pct.png": files(
        "docs/figures/kernels_cifar_18pct.png"
    ),
    "alexnet neighbors RUN --query docs/figures/queries/*.jpg --data cifar10:../shared/data --out "
    "docs/figures/neighbors_cifar_18pct.png": files("docs/figures/neighbors_cifar_18pct.png"),
}
# the ImageNet evaluation needs the prepared copy: the README shows `prepare` later, in its ImageNet section
ORDER_AFTER = {
    "alexnet evaluate runs/alexnet-tv --data /data/imagenet-256 --ten-crop": (
        "alexnet prepare /data/imagenet /data/imagenet-256 --workers 16"
    )
}


def test_every_readme_command_is_run_or_has_a_reason() -> None:
    unclassified = [
        c
        for c in readme_commands()
        if c not in RUN
        and c not in NOT_RUN
        and not any(c.startswith(p) for p in NOT_RUN_PREFIXES)
        and not c.startswith("--")
    ]
    assert unclassified == [], "commands neither run by this test nor given a reason in NOT_RUN"
    gone = [c for c in list(RUN) + list(NOT_RUN) if c not in readme_commands()]
    assert gone == [], "commands this test expects in the README or docs/ are no longer there"


def test_every_docs_page_is_read_and_the_readme_is_short() -> None:
    assert sorted(ROOT.glob("docs/*.md")) == sorted(PAGES[1:]), "a docs/*.md page missing from PAGES (or gone)"
    assert README.read_text().count("\n") <= 300
    for page in PAGES:  # every link to a file of the repository resolves
        for target in re.findall(r"\]\(([^)\s#]+)[^)]*\)", page.read_text()):
            if not re.match(r"(https?|mailto):", target):
                assert (page.parent / target).exists(), f"{page.relative_to(ROOT)}: link to {target} is broken"


def test_the_config_reference_is_generated() -> None:
    from alexnet.reference import config_reference

    assert (ROOT / "docs" / "config.md").read_text() == config_reference(), (
        "docs/config.md is not `python -m alexnet.reference`'s output: regenerate it"
    )


def test_every_alexnet_variable_is_read_in_settings_only() -> None:
    from alexnet.settings import VARIABLES

    readers = []
    for path in sorted((ROOT / "src" / "alexnet").rglob("*.py")):
        if path.name == "settings.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"(environ|getenv)\b.*ALEXNET_|ALEXNET_\w+.*environ", line):
                readers.append(f"{path.relative_to(ROOT)}:{n}")
    assert readers == []
    documented = (ROOT / "docs" / "config.md").read_text()
    assert all(f"`{name}`" in documented for name in VARIABLES)


def test_readme_commands_run_as_written(
    reader: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from alexnet.cli import main

    monkeypatch.chdir(reader)
    commands = [c for c in readme_commands() if c in RUN]
    for later, first in ORDER_AFTER.items():  # a command the README shows after the one that needs it
        commands.remove(first)
        commands.insert(commands.index(later), first)
    for cmd in commands:
        argv = shlex.split(substitute(cmd, reader))[1:]
        if argv[0] == "train":
            argv += ["--epochs", "2"]
        argv = [
            a
            for pattern in argv
            for a in (sorted(str(p.relative_to(reader)) for p in reader.glob(pattern)) if "*" in pattern else [pattern])
        ]
        code = main(argv)
        out = capsys.readouterr()
        assert code == 0, f"{cmd}: exit {code}\n{out.err[-2000:]}"
        RUN[cmd](reader, out.out + out.err)


def run_python_snippet(code: str, folder: Path) -> None:
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})


def test_readme_python_examples_run_as_written_twice_in_one_process(
    reader: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    snippets = list(dict.fromkeys(b for b in readme_blocks("python") if "import alexnet" in b))  # each once
    assert len(snippets) == 2, "the alexnet Python examples: the models one (docs) and the training one (README)"
    models, training = sorted(snippets, key=lambda b: "train" in b)
    run_python_snippet(models, reader)
    for attempt in range(2):  # twice in one process: the API must not change under its own imports
        work = tmp_path / f"reader{attempt}" / "work"
        work.mkdir(parents=True)
        (work.parent / "shared").symlink_to(reader.parent / "shared")
        rng = np.random.default_rng(attempt)
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(work / "digit.png")
        monkeypatch.chdir(work)
        run_python_snippet(training.replace('out="runs/lenet5")', 'out="runs/lenet5", epochs=2)'), work)
        assert (work / "runs" / "lenet5" / "best.pt").is_file()
    import alexnet

    # the documented functions are functions, whatever was imported before
    assert callable(alexnet.train) and callable(alexnet.evaluate) and callable(alexnet.load)
    result = alexnet.evaluate(work / "runs" / "lenet5", "mnist:" + str(reader.parent / "shared" / "data"))
    assert 0 <= result.top1_error <= 1 and result.n == 64
