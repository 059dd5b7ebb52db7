"""The recipe configs under ``configs/`` build what they say: the command in each file's header,
composed with the registry's files as ``train.py`` composes it, yields a model, data module and
Trainer carrying every value the recipe sets (a recipe applied before the registry's defaults, or
a value that no longer fits its model, would fail here rather than in a user's hour-long run)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from litsuite import frontend, registry
from litsuite.cli import SuiteCLI

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for p in (ROOT / "configs").glob("*.yaml") if p.name not in ("base.yaml", "debug.yaml"))


def header_command(path: Path) -> list[str] | None:
    """The arguments of the ``python train.py ...`` line in the file's leading comment."""
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            return None
        if "python train.py" in line:
            return shlex.split(line.split("python train.py", 1)[1])
    return None


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_command_builds_the_recipe(recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    argv = header_command(recipe)
    assert argv is not None, f"{recipe.name} should show the train.py command that uses it in its header"
    argv = [str(tmp_path) if a == "DIR" else a for a in argv]
    ns, rest = frontend.build_parser().parse_known_args(argv)
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
        assert getattr(cli.datamodule, key) == value, f"{recipe.name}: data.{key}"
    for key, value in config.get("trainer", {}).items():
        assert getattr(cli.trainer, key) == value, f"{recipe.name}: trainer.{key}"
    assert registry.data_name_of(f"{type(cli.datamodule).__module__}.{type(cli.datamodule).__name__}") == data
