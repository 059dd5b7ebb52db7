"""The ``ocr_cnn`` runs to compare losses with: the newest finished run of each loss on the same data."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from evaluation.context import EvalContext
from litsuite.runs import CONFIG_NAME, has_checkpoint, list_runs, pick_checkpoint

DATA_KEYS = (
    "charset",
    "num_chinese",
    "sizes",
    "test_families",
)  # settings that decide what a class and a test glyph are


def _settings(run_dir: Path) -> tuple[str, dict]:
    """``(loss, data settings)`` recorded in a run's ``config.yaml``."""
    config = yaml.safe_load((run_dir / CONFIG_NAME).read_text()) or {}
    model = (config.get("model") or {}).get("init_args") or {}
    data = (config.get("data") or {}).get("init_args") or {}
    return str(model.get("loss", "cross_entropy")), {k: data.get(k) for k in DATA_KEYS}


def _steps(ckpt: Path) -> int:
    return int(torch.load(ckpt, map_location="cpu", weights_only=False).get("global_step", 0))


def runs_by_loss(ctx: EvalContext) -> dict[str, tuple[Path, object, int]]:
    """``{loss: (run directory, model, optimiser steps)}``: this run for its own loss, the newest
    other run with a checkpoint and the same data settings for each other loss."""
    from lit_modules.ocr_cnn import OCRCNN

    own_loss, own_data = _settings(ctx.run_dir)
    found: dict[str, tuple[Path, object, int]] = {own_loss: (ctx.run_dir, ctx.model, _steps(ctx.ckpt_path))}
    for run in reversed(list_runs("ocr_cnn")):
        try:
            loss, data = _settings(run)
        except (OSError, yaml.YAMLError):
            continue
        if loss in found or data != own_data or not has_checkpoint(run):
            continue
        ckpt = pick_checkpoint(run)
        model = OCRCNN.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False)
        found[loss] = (run, model.to(next(ctx.model.parameters()).device), _steps(ckpt))
    return found
