"""Training progress on a terminal (a Rich bar) and in a log file (a plain line every few seconds).

Rich draws its bar only on a terminal; with standard output sent to a file (SLURM ``--output``,
``nohup``, ``> log``) it prints nothing until the end, so a long epoch leaves the log silent.
:func:`progress_bar_for` picks the Rich bar on a terminal and :class:`LogProgress` elsewhere.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta

import torch
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar
from lightning.pytorch.utilities.data import extract_batch_size
from rich.console import Console

# Seconds between two progress lines in a log file (--progress_every_s).
PROGRESS_EVERY_S = 30.0


def epoch_label(current_epoch: int, max_epochs: int | None) -> str:
    """``Epoch 8/8`` for the last of eight epochs: counted from 1, as people count them."""
    if max_epochs is None or max_epochs < 0:
        return f"Epoch {current_epoch + 1}"
    return f"Epoch {current_epoch + 1}/{max_epochs}"


def clock(seconds: float) -> str:
    """``0:05:07`` for 307 seconds."""
    return str(timedelta(seconds=int(seconds)))


def count(total: float) -> str:
    """A batch count, ``?`` for a loader without a length."""
    return "?" if total == float("inf") else str(int(total))


def batches_left(epoch: int, max_epochs: int | None, batch: int, total: float) -> float | None:
    """Training batches still to run: to the end of ``max_epochs``, or of this epoch when there is no limit.

    ``epoch`` counts from 0, ``batch`` (the one just trained) from 1; None for a loader without a length.
    """
    if total == float("inf"):
        return None
    left = total - batch
    if max_epochs is not None and max_epochs > 0:
        left += (max_epochs - epoch - 1) * total
    return left


class SuiteRichProgressBar(RichProgressBar):
    """Lightning's Rich bar, with the epoch counted from 1 (``Epoch 8/8``, not ``Epoch 7/7``).

    Lightning labels the bar with the 0-based epoch over ``max_epochs - 1``. The label is replaced
    through the public ``progress`` and ``train_progress_bar_id`` once Lightning has made the task
    (its own label shows for one frame before); the label itself is only made in a private method.
    """

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self._relabel(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.progress is None or self.train_progress_bar_id is None:  # disabled, e.g. on ranks other than zero
            return
        if self.train_progress_bar.description.strip() != self._label(trainer):
            self._relabel(trainer)  # a run resumed mid-epoch makes its task here, with Lightning's label

    def _label(self, trainer) -> str:
        return epoch_label(trainer.current_epoch, trainer.max_epochs)

    def _relabel(self, trainer) -> None:
        if self.progress is None or self.train_progress_bar_id is None:
            return
        # padded to the validation label's width, as Lightning does, so the bar does not jump
        label = f"{self._label(trainer):{len(self.validation_description)}}"
        self.progress.update(self.train_progress_bar_id, description=label)
        self.refresh()


class LogProgress(ProgressBar):
    """A plain progress line every ``every_s`` seconds, for standard output that is not a terminal.

    ``Epoch 3/8 · batch 120/469 · 512 samples/s · elapsed 0:01:23 · ETA 0:04:56 · train/loss 0.123 ·
    val/acc 0.845``: the epoch and batch (counted from 1), the samples per second over all processes
    since training started, the time since then and the estimated time to the end of training, and
    the metrics the model shows in a progress bar (``self.log(..., prog_bar=True)``), which hold the
    latest training loss and the last validation result. Validation and test batches get a line of
    their own when they take longer than ``every_s``; one more line closes training. Rank zero only
    (Lightning disables progress bars on the other ranks).

    Args:
        every_s: seconds between two lines.
    """

    def __init__(self, every_s: float = PROGRESS_EVERY_S) -> None:
        super().__init__()
        self.every_s = every_s
        self._enabled = True
        self._started = self._last_line = time.monotonic()
        self._batches = self._samples = 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _due(self) -> bool:
        now = time.monotonic()
        if not self._enabled or now - self._last_line < self.every_s:
            return False
        self._last_line = now
        return True

    def on_train_start(self, trainer, pl_module) -> None:
        self._started = self._last_line = time.monotonic()
        self._batches = self._samples = 0

    def on_test_start(self, trainer, pl_module) -> None:
        self._started = self._last_line = time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._batches += 1
        if self._samples is not None:
            try:
                self._samples += extract_batch_size(batch) * trainer.world_size
            except Exception:  # noqa: BLE001 - a batch without tensors: no samples/s, the rest still helps
                self._samples = None
        if self._due():
            self.print(self._train_line(trainer, pl_module, batch_idx + 1), flush=True)

    def on_train_end(self, trainer, pl_module) -> None:
        if self._enabled and self._batches:
            elapsed = clock(time.monotonic() - self._started)
            parts = [f"training ended after step {trainer.global_step}", f"elapsed {elapsed}"]
            self.print(" · ".join(parts + self._metric_parts(trainer, pl_module)), flush=True)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.has_dataloader_changed(dataloader_idx)  # lets the base class count the current loader's batches

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.has_dataloader_changed(dataloader_idx)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx=0) -> None:
        if not trainer.sanity_checking and self._due():
            total = self.total_val_batches_current_dataloader
            self.print(self._eval_line(trainer, "validating", batch_idx + 1, total), flush=True)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx=0) -> None:
        if self._due():
            total = self.total_test_batches_current_dataloader
            self.print(self._eval_line(trainer, "testing", batch_idx + 1, total), flush=True)

    def _train_line(self, trainer, pl_module, batch: int) -> str:
        """The progress line after training batch ``batch`` (counted from 1) of the current epoch."""
        total = self.total_train_batches
        parts = [epoch_label(trainer.current_epoch, trainer.max_epochs), f"batch {batch}/{count(total)}"]
        elapsed = time.monotonic() - self._started
        if self._samples and elapsed > 0:
            parts.append(f"{self._samples / elapsed:,.0f} samples/s")
        parts.append(f"elapsed {clock(elapsed)}")
        if (left := batches_left(trainer.current_epoch, trainer.max_epochs, batch, total)) is not None:
            parts.append(f"ETA {clock(left * elapsed / self._batches)}")
        return " · ".join(parts + self._metric_parts(trainer, pl_module))

    def _eval_line(self, trainer, what: str, batch: int, total: float) -> str:
        head = [epoch_label(trainer.current_epoch, trainer.max_epochs)] if what == "validating" else []
        elapsed = clock(time.monotonic() - self._started)
        return " · ".join([*head, f"{what} {batch}/{count(total)}", f"elapsed {elapsed}"])

    def _metric_parts(self, trainer, pl_module) -> list[str]:
        metrics = self.get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)  # the logger's version number: no news in a log file
        parts = []
        for name, value in metrics.items():
            value = value.item() if isinstance(value, torch.Tensor) else value
            parts.append(f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}")
        return parts


def progress_bar_for(every_s: float, stream=None) -> ProgressBar:
    """The Rich bar when ``stream`` (standard output by default) is a terminal Rich can animate, else log lines."""
    console = Console(file=stream or sys.stdout)
    return SuiteRichProgressBar() if console.is_interactive else LogProgress(every_s)
