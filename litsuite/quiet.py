"""Filters for library messages that say nothing useful about a litsuite run."""

from __future__ import annotations

import logging
import os
import warnings

_DROPPED_LOG_LINES = ("litlogger", "LitLogger")


class _DropLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in _DROPPED_LOG_LINES)


def silence_known_noise() -> None:
    """Drop the advertising tip, the args-versus-argv warning (the front end passes args on purpose)
    and, outside a SLURM job, the hint to use ``srun``."""
    for name in ("lightning.pytorch", "lightning.pytorch.utilities.rank_zero", "lightning.fabric"):
        logging.getLogger(name).addFilter(_DropLines())
    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    if not os.environ.get("SLURM_JOB_ID"):
        warnings.filterwarnings("ignore", message=".*The `srun` command is available.*")
