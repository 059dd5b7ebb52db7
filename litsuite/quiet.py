"""Filters for library messages that say nothing useful about a litsuite run."""

from __future__ import annotations

import logging
import os
import warnings

_DROPPED_LOG_LINES = (
    "litlogger",
    "LitLogger",
    # the suite adds its own model summary (litsuite.summary) on purpose
    "Trainer already configured with model summary callbacks",
)


class _DropLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in _DROPPED_LOG_LINES)


def silence_known_noise() -> None:
    """Drop the advertising tip, the args-versus-argv warning (the front end passes args on purpose),
    the note that the suite's model summary replaces Lightning's, the warning that a resumed run's
    checkpoint folder is not empty and, outside a SLURM job, the hint to use ``srun``."""
    for name in ("lightning.pytorch", "lightning.pytorch.utilities.rank_zero", "lightning.fabric"):
        logging.getLogger(name).addFilter(_DropLines())
    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    # Every run has a checkpoint folder of its own, so one with files in it is always this run's own,
    # continued by --resume; Lightning warns because, in general, it might belong to another run.
    warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
    if not os.environ.get("SLURM_JOB_ID"):
        warnings.filterwarnings("ignore", message=".*The `srun` command is available.*")


def silence_wandb_settings_warning() -> None:
    """Keep wandb from printing "The anonymous setting has no effect" at every run.

    Lightning's ``WandbLogger`` passes ``anonymous`` to ``wandb.init`` even when it is unset, and
    wandb warns about any value since it dropped anonymous mode (wandb/wandb#10909, which names
    the Lightning integration as the reason for its six-month transition). The warning is printed
    while ``wandb.init`` reads its arguments, before it applies ``WANDB_SILENT``; setting wandb up
    first applies ``WANDB_SILENT`` (set by :func:`litsuite.loggers.choose_wandb_mode` unless the
    user chose otherwise) to that warning too. Nothing happens when ``WANDB_SILENT`` is not true.
    """
    if os.environ.get("WANDB_SILENT", "").lower() not in ("true", "1"):
        return
    import wandb

    wandb.setup()
