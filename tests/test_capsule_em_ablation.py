"""The capsule_em ablation: each row is the recipe with exactly its one change, all rows see the same images,
the rows load as train.py configs, and the study's SLURM mode renders one array task per row."""

from __future__ import annotations

from pathlib import Path

import yaml

from evaluation import capsule_em_ablation as ablation
from evaluation.sweep import merged, write_configs
from litsuite import registry


def flatten(config: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_merged_lays_nested_overrides_over_a_copy():
    base = {"model": {"init_args": {"a": 1, "b": 2}}, "trainer": {"max_epochs": 3}}
    result = merged(base, {"model": {"init_args": {"b": 5}}, "data": {"x": 1}})
    assert result == {"model": {"init_args": {"a": 1, "b": 5}}, "trainer": {"max_epochs": 3}, "data": {"x": 1}}
    assert base["model"]["init_args"]["b"] == 2


def test_every_row_is_the_recipe_with_only_its_own_change(tmp_path):
    recipe = registry.load_yaml(ablation.RECIPE)
    configs = ablation.row_configs(recipe, list(ablation.ROWS), samples=6400)
    reference = flatten(configs["recipe"])
    batch = recipe["data"]["init_args"]["batch_size"]
    for name, config in configs.items():
        flat = flatten(config)
        assert flat["trainer.max_steps"] * batch == 6400 and flat["trainer.limit_val_batches"] == 0
        changed = {k for k in flat if flat[k] != reference.get(k)}
        expected = {f"model.init_args.{k}" for k in ablation.ROWS[name][1]}
        assert changed == expected, name
        assert all(flat[k] != recipe["model"]["init_args"][k.rsplit(".", 1)[1]] for k in expected)
    for path in write_configs(tmp_path, configs):
        assert yaml.safe_load(path.read_text())["model"]["class_path"].endswith("MatrixCapsNet")


def test_slurm_mode_renders_one_array_task_per_row(tmp_path, monkeypatch):
    monkeypatch.chdir(Path(ablation.__file__).resolve().parent.parent)  # submit.py checks paths from the repository
    out = tmp_path / "study"
    code = ablation.main(["--rows", "recipe", "iterations_1", "--out", str(out), "--slurm", "--", "--dry-run",
                          "--cpu", "--out-dir", str(tmp_path / "generated")])
    assert code == 0
    (script,) = (tmp_path / "generated").glob("capsule-em-ablation-*.sbatch")
    text = script.read_text()
    assert "#SBATCH --array=0-1" in text and f"{out}/configs/iterations_1.yaml" in text
    assert "--model capsule_em" in text and "--data fashion_mnist" in text
