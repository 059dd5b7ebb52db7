"""Guards that turn silent or hanging failures into one clear message and a non-zero exit.

- :class:`FiniteLossGuard` (listed in ``configs/base.yaml``) stops at the first non-finite loss,
  naming the step and the last good checkpoint, on every rank at the same step.
- :func:`describe_failure` reduces a data-loader worker crash, a DDP timeout or a lost rank to one line.

A rank that dies is handled by the launcher and by timeouts, not here: see ``DDP_TIMEOUT`` in
:mod:`litsuite.cli` and ``srun --kill-on-bad-exit=1`` in the SLURM templates.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from lightning.pytorch import Callback


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message names the step and what to do."""


class FiniteLossGuard(Callback):
    """Stops training when the loss returned by ``training_step`` is not finite.

    Lightning's ``detect_anomaly`` finds the operation that made a NaN but slows every backward
    pass several times; this check costs one ``isfinite`` and, under DDP, one tiny all-reduce per
    step, so it stays on. The all-reduce makes every rank raise at the same step: a rank raising
    alone would leave the others waiting in the next collective.

    The check runs after the optimiser step, so the weights in memory are already damaged; nothing
    is saved after the error, and the last checkpoint on disk is the last good one.
    """

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        bad = isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss.detach()).all())
        # every rank must take part in the reduction, whether or not it has a loss to check
        if trainer.strategy.reduce_boolean_decision(bad, all=False):
            raise NonFiniteLossError(self.message(trainer, batch_idx, loss if bad else None))

    @staticmethod
    def message(trainer, batch_idx: int, loss: torch.Tensor | None) -> str:
        """The one-line error: what, where, the last good checkpoint, and what to try."""
        value = f" ({loss.detach().float().flatten()[0].item()})" if loss is not None and loss.numel() else ""
        where = f"at step {trainer.global_step} (epoch {trainer.current_epoch}, batch {batch_idx})"
        good = last_good_checkpoint(trainer)
        if good:
            after = f"last good checkpoint: {good}; resume from it with --resume {good} and a lower learning rate"
        else:
            after = "no checkpoint was saved before it; lower the learning rate and start again"
        find = "or find the operation with --trainer.detect_anomaly true"
        return f"non-finite training loss{value} {where}; {after}, {find}"


def last_good_checkpoint(trainer) -> str | None:
    """The newest checkpoint the run wrote before now (``last.ckpt`` when there is one)."""
    callback = trainer.checkpoint_callback
    for candidate in (getattr(callback, "last_model_path", ""), getattr(callback, "best_model_path", "")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    return None


_WORKER_DIED = re.compile(
    r"DataLoader worker \(pid(?:\(s\))? ([\d, ]+)\) (?:exited unexpectedly|is killed by signal: ([\w ]+))"
)
_WORKER_RAISED = re.compile(r"Caught (\w+) in DataLoader worker process (\d+)")
_TIMED_OUT = re.compile(
    r"Timed out waiting \d+ ?ms|timeout caused pair closure|Watchdog caught collective operation timeout"
    r"|collective.*timed out",
    re.I,
)
_PEER_GONE = re.compile(r"Connection (?:closed|reset) by peer|Broken pipe", re.I)


def describe_failure(err: BaseException) -> str | None:
    """One line for a data-loader worker that died or raised; None for any other error."""
    text = str(err)
    if died := _WORKER_DIED.search(text):
        pids = died.group(1).strip()
        how = f"was killed by signal {died.group(2).strip()}" if died.group(2) else "exited unexpectedly"
        return (
            f"a data-loader worker (pid {pids}) {how}, often out of memory or a full /dev/shm; "
            "run with --data.init_args.num_workers 0 to see the error in the main process, "
            "then continue with --resume auto"
        )
    if raised := _WORKER_RAISED.search(text):
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        original = lines[-1] if lines else raised.group(1)
        return (
            f"data-loader worker {raised.group(2)} failed: {original}; "
            "run with --data.init_args.num_workers 0 for the full traceback"
        )
    if _TIMED_OUT.search(text):
        return (
            "a DDP collective timed out: another rank stopped responding (hung, or stopped without exiting), "
            "so this one gives up instead of waiting forever; if a rank legitimately needs longer "
            "(a slow save or evaluation on rank zero), raise --ddp_timeout_minutes"
        )
    if _PEER_GONE.search(text):
        return "lost the connection to another DDP rank: it died (its own error, or an out-of-memory kill, says why)"
    return None
