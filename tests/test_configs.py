"""The recipe configs build what they say: the command in each file's header, composed with the
registry's files as ``train.py`` composes it, yields a model, data module and Trainer carrying
every value the recipe sets (a recipe applied before the registry's defaults, or a value that no
longer fits its model, would fail here rather than in a user's hour-long run). Recipes are the
``configs/model/<model>@<data>.yaml`` files, which ``--model M --data D`` applies by itself, and
the ``--config`` files at the top of ``configs/``."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from litsuite import frontend, registry
from litsuite.cli import SuiteCLI

ROOT = Path(__file__).resolve().parents[1]
CONFIG_RECIPES = sorted(p for p in (ROOT / "configs").glob("*.yaml") if p.name not in ("base.yaml", "debug.yaml"))
PAIR_RECIPES = sorted((ROOT / "configs" / "model").glob("*@*.yaml"))
RECIPES = CONFIG_RECIPES + PAIR_RECIPES
MODELS = ("linear_ae", "capsule", "capsule_em", "cnn_baseline")
IMAGE_DATA = ("mnist", "fashion_mnist", "cifar10", "smallnorb", "synthetic")  # digits: the model's own file


def header_command(path: Path) -> list[str] | None:
    """The arguments of the ``python train.py ...`` line in the file's leading comment."""
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            return None
        if "python train.py" in line:
            return shlex.split(line.split("python train.py", 1)[1])
    return None


def test_every_model_has_a_recipe_for_every_image_data_set():
    assert {p.stem for p in PAIR_RECIPES} >= {f"{m}@{d}" for m in MODELS for d in IMAGE_DATA}


@pytest.mark.parametrize("recipe", PAIR_RECIPES, ids=lambda p: p.stem)
def test_pair_recipe_states_its_measured_size_and_speed(recipe):
    """A recipe's header says what it costs, measured: parameters and seconds per step."""
    header = "\n".join(line for line in recipe.read_text().splitlines() if line.startswith("#"))
    assert " parameters" in header and "s/step" in header, f"{recipe.name}: header should give parameters and s/step"


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_command_builds_the_recipe(recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    argv = header_command(recipe)
    assert argv is not None, f"{recipe.name} should show the train.py command that uses it in its header"
    argv = [str(tmp_path) if a == "DIR" else a for a in argv]
    ns, rest = frontend.build_parser().parse_known_args(argv)
    if "@" in recipe.stem:  # applied by the registry for its pair, with no --config
        assert [ns.model, ns.data] == recipe.stem.split("@") and not ns.config, recipe.name
    else:
        assert f"configs/{recipe.name}" in ns.config
    data = registry.data_config(ns.data).stem if ns.data else registry.default_data_of(ns.model)
    args = frontend.cli_arguments(ns, ns.model, data, "none", tmp_path, rest, resumed=False)
    cli = SuiteCLI(
        [*args, "--trainer.enable_progress_bar", "false"], registry.model_class_path(ns.model), save_config=False
    )

    config = registry.load_yaml(recipe)
    for key, value in config.get("model", {}).get("init_args", {}).items():
        assert cli.model.hparams[key] == value, f"{recipe.name}: model.{key}"
    for key, value in config.get("data", {}).get("init_args", {}).items():
        # an argument the data module folds into another attribute (image_size into input_shape) is
        # checked in the parsed config, which is what the data module was built from
        built = getattr(cli.datamodule, key) if hasattr(cli.datamodule, key) else cli.config.data.init_args[key]
        assert built == value, f"{recipe.name}: data.{key}"
    for key, value in config.get("trainer", {}).items():
        assert getattr(cli.trainer, key) == value, f"{recipe.name}: trainer.{key}"
    assert registry.data_name_of(f"{type(cli.datamodule).__module__}.{type(cli.datamodule).__name__}") == data
