"""A packed dataset is checked before it is trusted: every field of ``dataset.json`` and every file of a
split edited after the fact ends in one line naming the file and the field (exit 2), before any model is
built, in every reader (``train`` and ``evaluate`` here; all go through ``load_packed``)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alexnet.cli import main

from .support.data import save_untrained_run, synthetic_packed


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_packed(tmp_path_factory.mktemp("packed") / "p", 40, size=32, classes=4, val=12)


def copy(packed: Path, tmp: Path) -> Path:
    dst = tmp / "edited"
    shutil.copytree(packed, dst)
    return dst


def edit_json(root: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    meta = json.loads((root / "dataset.json").read_text())
    out = change(meta)  # mutates meta in place, or returns a replacement document (a list)
    (root / "dataset.json").write_text(json.dumps(out if isinstance(out, list) else meta))


def truncate(name: str, by: int = 1) -> Callable[[Path], None]:
    def go(root: Path) -> None:
        f = root / name
        f.write_bytes(f.read_bytes()[:-by])

    return go


def labels(value: int) -> Callable[[Path], None]:
    def go(root: Path) -> None:
        lab = np.fromfile(root / "train_labels.i32", dtype="<i4")
        lab[3] = value
        lab.tofile(root / "train_labels.i32")

    return go


def js(change: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    return lambda root: edit_json(root, change)


CASES = {  # the edit -> what the one line must name
    "a JSON array": (js(lambda m: [m]), "the top level"),
    "version a string": (js(lambda m: m.update(version="1")), "version"),
    "no splits": (js(lambda m: m.pop("splits")), "splits"),
    "no image_size": (js(lambda m: m.pop("image_size")), "image_size"),
    "image_size 0": (js(lambda m: m.update(image_size=0)), "image_size"),
    "a count one larger": (js(lambda m: m["splits"]["train"].update(count=41)), "train_images.u8"),
    "a negative count": (js(lambda m: m["splits"]["train"].update(count=-1)), "splits.train.count"),
    "a count that is a string": (js(lambda m: m["splits"]["train"].update(count="40")), "splits.train.count"),
    "one channel for three": (js(lambda m: m.update(channels=1)), "train_images.u8"),
    "no classes": (js(lambda m: m.update(classes=[])), "classes"),
    "fewer classes than labels": (
        js(lambda m: m.update(classes=m["classes"][:2], class_names=m["classes"][:2])),
        "train_labels.i32",
    ),
    "truncated images": (truncate("train_images.u8"), "train_images.u8"),
    "truncated labels": (truncate("train_labels.i32", 4), "train_labels.i32"),
    "a truncated mean image": (truncate("mean_image.f32", 4), "mean_image.f32"),
    "a label of -1": (labels(-1), "train_labels.i32"),
    "a label past the classes": (labels(4), "train_labels.i32"),
    "no statistics": (js(lambda m: m.pop("stats")), "stats"),
    "a std that is a string": (js(lambda m: m["stats"].update(channel_std="big")), "stats.channel_std"),
    "an empty validation split": (js(lambda m: m["splits"]["val"].update(count=0)), "splits.val.count"),
    "not complete": (js(lambda m: m.update(complete=False)), "complete"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_edited_packed_dataset_is_one_line(
    case: str, packed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit, named = CASES[case]
    root = copy(packed, tmp_path)
    edit(root)
    t0 = time.perf_counter()
    code = main(
        [
            "train",
            "--model",
            "cifar_18pct",
            "--data",
            str(root),
            "--out",
            str(tmp_path / "run"),
            "--epochs",
            "1",
            "--workers",
            "0",
            "--recipe",
            "none",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert named in err and "Traceback" not in err and time.perf_counter() - t0 < 10, err
    assert not (tmp_path / "run" / "last.pt").exists()  # refused before any training


def test_evaluate_checks_the_same(packed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = save_untrained_run(
        tmp_path / "r", "cifar_18pct", classes=json.loads((packed / "dataset.json").read_text())["classes"]
    )
    root = copy(packed, tmp_path)
    labels(7)(root)
    assert main(["evaluate", str(run), "--data", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train_labels.i32" in err, err  # evaluate reads val: train is checked too


FIELDS = [
    "format",
    "version",
    "complete",
    "image_size",
    "channels",
    "layout",
    "dtype",
    "classes",
    "class_names",
    "splits",
    "stats",
]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@pytest.mark.faults
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FIELDS), value=VALUES, drop=st.booleans())
def test_any_field_set_to_anything_is_refused_or_read(
    field: str, value: Any, drop: bool, packed: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Property: whatever a field of dataset.json is set to (or dropped), opening the dataset either
    works or raises one UserError line; never another exception."""
    from alexnet.data.packed.reader import load_packed, packed_stats
    from alexnet.errors import UserError

    root = copy(packed, tmp_path_factory.mktemp("prop"))
    edit_json(root, lambda m: m.pop(field, None) if drop else m.update({field: value}))
    try:
        for split in ("train", "val"):
            load_packed(root, split)
        packed_stats(root)
    except UserError as e:
        assert len(str(e).splitlines()) == 1 and ("dataset.json" in str(e) or ".u8" in str(e)), str(e)
