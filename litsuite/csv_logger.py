"""A CSV logger that keeps the rows of earlier sessions of the same run (resume, requeue), once each.

A session that ends without warning (SIGKILL, out of memory, a lost node) has often logged rows
after its last checkpoint. The session resuming from that checkpoint trains those steps again and
logs them anew, so its rows replace the old ones: when it starts, rows of steps after the
checkpoint are dropped, and when it first writes, any older row at or after its first step too.
"""

from __future__ import annotations

import csv
import os

from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


def drop_rows_from(path: str, step: int) -> int:
    """Remove the rows of ``metrics.csv`` whose ``step`` is ``step`` or later; returns how many went.

    The file is replaced atomically (written beside it, then renamed), so a kill leaves one version.
    """
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames or [], list(reader)
    kept = [row for row in rows if not row.get("step") or int(float(row["step"])) < step]
    if len(kept) == len(rows):
        return 0
    partial = f"{path}.partial"
    with open(partial, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
    os.replace(partial, path)
    return len(rows) - len(kept)


class _AppendingWriter(ExperimentWriter):
    """Lightning's writer deletes an existing ``metrics.csv``; this one continues it.

    ``replace_from``: a step from which the file's rows belong to a session being replaced; at the
    first save the earliest step this session logged lowers it further.
    """

    replace_from: int | None = None
    _first_save = True

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])

    def save(self) -> None:
        if self._first_save and self.metrics and self._fs.isfile(self.metrics_file_path):
            # This session's first rows: any older row from their step on was logged by a session that
            # did not live to checkpoint it, and is logged again now.
            first = min(int(row["step"]) for row in self.metrics)
            if self.replace_from is not None:
                first = min(first, self.replace_from)
            drop_rows_from(self.metrics_file_path, first)
        if self.metrics:
            self._first_save = False
        super().save()


class RunCSVLogger(CSVLogger):
    """``CSVLogger`` writing ``<save_dir>/metrics.csv`` and appending across resumed sessions."""

    @property
    @rank_zero_experiment
    def experiment(self) -> _AppendingWriter:
        if self._experiment is None:
            get_filesystem(self.log_dir).makedirs(self.log_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    def replace_from(self, step: int) -> None:
        """Drop the rows of ``step`` and later now: this session logs those steps again."""
        writer = self.experiment
        writer.replace_from = step
        if os.path.isfile(writer.metrics_file_path):
            drop_rows_from(writer.metrics_file_path, step)


def continue_metrics(trainer) -> None:
    """At the start of training, drop the rows the previous session logged after the state this one starts from.

    Resuming, that is every step after the checkpoint's (the steps loggers see count batches that
    stepped an optimiser, saved in the checkpoint); a session starting afresh in a run directory
    that already has rows (a requeued job whose first session never saved) replaces all of them.
    """
    if not trainer.is_global_zero:
        return
    # trainer.ckpt_path, not fit_loop.restarting: the latter is False after an epoch-end checkpoint
    resumed = trainer.ckpt_path is not None
    step = trainer.fit_loop.epoch_loop._batches_that_stepped + 1 if resumed else 0  # as restored; saved so
    for logger in trainer.loggers:
        if isinstance(logger, RunCSVLogger):
            logger.replace_from(step)
