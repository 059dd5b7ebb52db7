"""The ``ocr_cnn`` runs to compare losses with: the newest finished run of each loss on the same data."""

from __future__ import annotations

from pathlib import Path

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


def runs_by_loss(ctx: EvalContext) -> dict[str, tuple[Path, object]]:
    """``{loss: (run directory, model)}``: this run for its own loss, the newest other run with a
    checkpoint and the same data settings for each other loss."""
    from lit_modules.ocr_cnn import OCRCNN

    own_loss, own_data = _settings(ctx.run_dir)
    found: dict[str, tuple[Path, object]] = {own_loss: (ctx.run_dir, ctx.model)}
    for run in reversed(list_runs("ocr_cnn")):
        try:
            loss, data = _settings(run)
        except (OSError, yaml.YAMLError):
            continue
        if loss in found or data != own_data or not has_checkpoint(run):
            continue
        model = OCRCNN.load_from_checkpoint(pick_checkpoint(run), map_location="cpu", weights_only=False)
        found[loss] = (run, model.to(next(ctx.model.parameters()).device))
    return found
