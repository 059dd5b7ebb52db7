"""A trained run's model and data module, rebuilt from its ``config.yaml`` and checkpoint, for measurements
outside ``evaluate.py`` (probes on frozen features, studies over many runs)."""

from __future__ import annotations

import importlib
from pathlib import Path

from litsuite import registry


def instantiate(section: dict):
    """An object from a ``class_path``/``init_args`` section of a run's config."""
    module, _, name = section["class_path"].rpartition(".")
    return getattr(importlib.import_module(module), name)(**(section.get("init_args") or {}))


def load_run(run: Path, ckpt: Path | None = None):
    """``(model in eval mode on the CPU, data module set up for fitting and testing, config)`` of a run.

    The weights come from ``ckpt``, by default the run's ``checkpoints/last.ckpt``.
    """
    config = registry.load_yaml(run / "config.yaml")
    datamodule = instantiate(config["data"])
    datamodule.setup("fit")
    module, _, name = config["model"]["class_path"].rpartition(".")
    model_class = getattr(importlib.import_module(module), name)
    model = model_class.load_from_checkpoint(ckpt or run / "checkpoints" / "last.ckpt", map_location="cpu")
    return model.eval(), datamodule, config
