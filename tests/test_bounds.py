"""Every number of a recipe bounded before any work: sizes, counts and depths that cannot fit, values
past their type's range, model options out of range, recipes too large or nested too deep. Each is one
line naming the key (or the file), exit 2, within seconds; nothing is allocated, nothing hangs."""

from __future__ import annotations

import dataclasses
import math
import time
import typing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alexnet import TrainConfig, UserError
from alexnet.cli import main
from alexnet.config import BOUNDS

CASES = {  # recipe text -> what the line names
    "image_size = 1000000": "image-size",
    "crop_size = 1000000": "crop-size",
    "pad = 1000000000": "pad",
    "translate = 1000000000": "translate",
    "prefetch = 1000000000": "prefetch",
    "seed = 18446744073709551616": "seed",
    "seed = -9223372036854775809": "seed",
    "cache_limit_gb = 1e308": "cache-limit-gb",
    "batch_size = 100000000": "batch-size",
    "epochs = 1e400": "epochs",
    "[model_options]\ninput_size = 100000": "input_size",
    "[model_options]\nlrn_scale = nan": "lrn_scale",
    "[model_options]\nlrn_scale = 1e308": "lrn_scale",
    "[model_options]\nin_chans = 0": "in_chans",
    '[model_options]\nin_chans = "x"': "in_chans",
    "[model_options]\nin_chans = 1000000": "in_chans",
    "[model_options]\nin_chans = 2": "in_chans",
    "a = " + "[" * 5000 + "]" * 5000: "nested too deeply",
    "\n".join(f"unknown_key_{i} = 1" for i in range(20000)): "and 19,995 more",
}


@pytest.mark.parametrize("text", list(CASES), ids=[t[:30] for t in CASES])
def test_a_recipe_number_past_its_bound_is_one_line(
    text: str, tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text('model = "cifar_18pct"\n' + text + "\n")
    t0 = time.perf_counter()
    code = main(
        ["train", "--recipe", str(recipe), "--data", str(tiny_folder), "--out", str(tmp_path / "run"), "--workers", "0"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and len(err) < 400, err[:500]
    assert CASES[text] in err and time.perf_counter() - t0 < 10, err


def test_recipe_files_that_cannot_be_recipes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * (2 << 20))
    for path, named in ((big, "at most 1,048,576"), (Path("/proc/self/mem"), "cannot be read"), (tmp_path, "no such")):
        assert main(["train", "--recipe", str(path), "--data", "x", "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--recipe" in err and (named in err or "cannot be read" in err), err


def test_the_input_pipeline_that_cannot_fit_is_refused_before_any_allocation() -> None:
    from alexnet.data.transforms import EvalTransform
    from alexnet.engine.checks import check_memory

    t = EvalTransform(256, 224, 0, 3, (0.0,) * 3, (1.0,) * 3)
    cfg = TrainConfig(batch_size=65536, prefetch=64)
    with pytest.raises(UserError, match="batch-size 65536 with prefetch 64"):
        check_memory(cfg, t, 65536, available=16 << 30)
    check_memory(TrainConfig(), t, 128, available=16 << 30)  # the defaults fit


NUMERIC = [f.name for f in dataclasses.fields(TrainConfig) if f.name in BOUNDS]


@pytest.mark.faults
@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(NUMERIC), value=st.one_of(st.integers(-(2**70), 2**70), st.floats()))
def test_every_numeric_key_in_or_out_of_its_bounds(key: str, value: float) -> None:
    """Property over TrainConfig's numeric fields: any value either validates (and is then within its
    bound) or is one UserError line naming the key; never another exception."""
    hints = typing.get_type_hints(TrainConfig)
    try:
        cfg = TrainConfig.from_dict({key: value}).validate()
    except UserError as e:
        assert len(str(e).splitlines()) == 1 and key.replace("_", "-") in str(e) or key in str(e), str(e)
        return
    v = getattr(cfg, key)
    lo, hi = BOUNDS[key]
    assert lo <= v <= hi and math.isfinite(v), (key, v)
    assert hints[key] in (int, float) or v is not None
