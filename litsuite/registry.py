"""The model and data set registry: one YAML file per name under ``configs/``.

This module imports neither torch nor Lightning, so that a wrong name is answered at once; names
are checked with the standard library alone (``slurm/submit.py`` runs where PyYAML may be missing),
and YAML is read only when a file's contents are needed.
"""

from __future__ import annotations

import difflib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "configs"
BASE_CONFIG = CONFIG_DIR / "base.yaml"


class ChoiceError(ValueError):
    """A name that is not in the registry; the message lists the valid choices."""


def _names(kind: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / kind).glob("*.yaml") if "@" not in p.stem)


def model_names() -> list[str]:
    """Names accepted by ``--model``: the files ``configs/model/<name>.yaml``."""
    return _names("model")


def data_names() -> list[str]:
    """Names accepted by ``--data``: the files ``configs/data/<name>.yaml``."""
    return _names("data")


def check_choice(kind: str, name: str, choices: list[str]) -> str:
    """Return ``name`` if it is one of ``choices``, else raise a one-line :class:`ChoiceError`."""
    if name in choices:
        return name
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ChoiceError(f"unknown {kind} '{name}'{hint}; valid choices: {', '.join(choices)}")


def model_config(name: str) -> Path:
    """Path of the registry entry for model ``name`` (validated)."""
    return CONFIG_DIR / "model" / f"{check_choice('model', name, model_names())}.yaml"


def data_config(name: str) -> Path:
    """Path of the registry entry for data set ``name`` (validated)."""
    return CONFIG_DIR / "data" / f"{check_choice('data set', name, data_names())}.yaml"


def pairing_config(model: str, data: str) -> Path | None:
    """``configs/model/<model>@<data>.yaml``: settings for one model on one data set (batch size,
    learning rate, epochs), applied after the data set's config. None when there is none."""
    path = CONFIG_DIR / "model" / f"{model}@{data}.yaml"
    return path if path.is_file() else None


def load_yaml(path: Path) -> dict:
    """Read a YAML mapping; an empty file gives ``{}``."""
    import yaml

    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def class_path_of(entry: dict, key: str) -> str | None:
    """The ``class_path`` under ``entry[key]`` (``model`` or ``data``), if any."""
    section = entry.get(key) or {}
    return section.get("class_path") if isinstance(section, dict) else None


def model_class_path(model: str) -> str | None:
    """The model class ``configs/model/<model>.yaml`` builds."""
    return class_path_of(load_yaml(model_config(model)), "model")


def default_data_of(model: str) -> str:
    """The data set a model trains on when ``--data`` is not given, found by its class path."""
    wanted = class_path_of(load_yaml(model_config(model)), "data")
    if (name := _registered_name("data", wanted)) is None:
        raise ChoiceError(
            f"configs/model/{model}.yaml names data class '{wanted}', which no configs/data/*.yaml registers"
        )
    return name


def _registered_name(kind: str, class_path: str | None) -> str | None:
    """The name of the ``configs/<kind>/<name>.yaml`` that registers ``class_path``, if any."""
    for name in _names(kind):
        if class_path_of(load_yaml(CONFIG_DIR / kind / f"{name}.yaml"), kind) == class_path:
            return name
    return None


def model_name_of(class_path: str) -> str:
    """The registry name whose YAML names model ``class_path`` (the class name itself if none does)."""
    return _registered_name("model", class_path) or class_path.rpartition(".")[2]


def data_name_of(class_path: str) -> str:
    """The registry name whose YAML names data ``class_path`` (the class name itself if none does)."""
    return _registered_name("data", class_path) or class_path.rpartition(".")[2]
