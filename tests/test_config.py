"""Config: every shipped recipe parses and builds its model; bad keys and types name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from alexnet import TrainConfig, UserError, create_model
from alexnet.config import dump_toml, load_recipe

RECIPES = sorted((Path(__file__).parents[1] / "recipes").glob("*.toml"))


def test_there_are_recipes() -> None:
    assert len(RECIPES) >= 3


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_shipped_recipe_parses_and_builds(path: Path) -> None:
    cfg = TrainConfig.from_recipe(path).validate()
    create_model(cfg.model, **cfg.model_options)


def test_flags_override_the_recipe() -> None:
    cfg = TrainConfig.from_recipe("lenet5_mnist", epochs=3, lr=0.5)
    assert cfg.model == "lenet5" and cfg.epochs == 3 and cfg.lr == 0.5


def test_unknown_key_and_wrong_type_name_the_key(tmp_path: Path) -> None:
    (tmp_path / "r.toml").write_text('model = "lenet5"\nepoch = 3\n')
    with pytest.raises(UserError, match="unknown key 'epoch'"):
        TrainConfig.from_recipe(tmp_path / "r.toml")
    (tmp_path / "r.toml").write_text('epochs = "three"\n')
    with pytest.raises(UserError, match="epochs: expected an integer"):
        TrainConfig.from_recipe(tmp_path / "r.toml")
    with pytest.raises(UserError, match="precision: must be one of"):
        TrainConfig(precision="fp8").validate()
    with pytest.raises(UserError, match="no such file"):
        load_recipe(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("model = \n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_recipe(tmp_path / "bad.toml")


def test_resolved_config_round_trips() -> None:
    import tomllib

    cfg = TrainConfig(model="alexnet", model_options={"lrn": False, "width": 0.5}, max_train_images=None)
    back = TrainConfig.from_dict(tomllib.loads(dump_toml(cfg.to_dict())))
    assert back == cfg
