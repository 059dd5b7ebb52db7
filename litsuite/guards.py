"""Guards that turn silent or hanging failures into one clear message and a non-zero exit.

- :class:`FiniteLossGuard` (listed in ``configs/base.yaml``) stops at a non-finite loss, naming the
  first bad step and the last good checkpoint, on every rank at the same point.
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
    """Stops training when a loss of ``training_step`` is not finite (see :meth:`step_losses`).

    Lightning's ``detect_anomaly`` finds the operation that made a NaN but slows every backward
    pass several times; this check costs one ``isfinite`` per step, kept on the device (no host
    sync), so it stays on. One process reads the flag after every step. Under DDP the ranks
    compare their flags in one small all-reduce every ``check_every_n_steps`` steps, at the last
    batch of every epoch and before every checkpoint is written: every rank raises at the same
    point (a rank raising alone would leave the others waiting in the next collective), the error
    names the first bad step on any rank, and no checkpoint is saved after it. A per-step
    all-reduce would add a synchronisation point to every step, which on CPU costs as much as a
    small model's whole step.

    The weights in memory are already damaged when the error is raised; the last checkpoint on
    disk is the last good one.

    Args:
        check_every_n_steps: under DDP, optimiser steps between two comparisons of the ranks' flags.
    """

    _NONE = float("inf")  # no bad batch seen yet

    def __init__(self, check_every_n_steps: int = 20) -> None:
        if check_every_n_steps < 1:
            raise ValueError(f"check_every_n_steps must be at least 1, got {check_every_n_steps}")
        self.check_every_n_steps = check_every_n_steps
        self._reset()

    def _reset(self) -> None:
        self._first_bad: torch.Tensor | None = None  # index (into _positions) of the first bad batch
        self._positions: list[tuple[int, int, int]] = []  # (step, epoch, batch) of each batch since the last check
        self._values: dict[int, torch.Tensor] = {}
        self._last_check_step = 0

    def on_train_start(self, trainer, pl_module) -> None:
        self._reset()
        self._last_check_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loss = self.step_losses(outputs, trainer)
        index = len(self._positions)
        self._positions.append((trainer.global_step, trainer.current_epoch, batch_idx))
        if isinstance(loss, torch.Tensor):
            bad = ~torch.isfinite(loss.detach()).all()
            here = torch.where(bad, float(index), self._NONE).to(loss.device, torch.float64)
            self._first_bad = here if self._first_bad is None else torch.minimum(self._first_bad, here)
            self._values[index] = loss.detach()  # read only if this batch turns out to be the first bad one
        last_of_epoch = batch_idx + 1 >= trainer.num_training_batches
        due = trainer.global_step - self._last_check_step >= self.check_every_n_steps
        # all three conditions depend only on values every rank shares, so the collectives stay matched
        if trainer.world_size == 1 or last_of_epoch or due:
            self.check(trainer)

    @staticmethod
    def step_losses(outputs, trainer=None) -> torch.Tensor | None:
        """The loss values of one training step, flattened into one tensor (None if there are none).

        In order: a returned tensor; the ``loss`` of a returned mapping; every floating-point tensor of
        a returned mapping (a manual-optimisation step returning its losses by name, e.g. a GAN's
        critic and generator losses); else the values the step logged with ``self.log`` (a step
        that returns nothing). Only tensors are read, so nothing waits for the device.
        """
        if isinstance(outputs, torch.Tensor):
            return outputs.detach()
        if isinstance(outputs, Mapping):
            if isinstance(outputs.get("loss"), torch.Tensor):
                return outputs["loss"].detach()
            values = [v.detach().flatten() for v in outputs.values() if _is_float_tensor(v)]
            if values:
                return torch.cat([v.to(values[0].device, torch.float32) for v in values])
        return _logged_this_step(trainer) if trainer is not None else None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        # every rank writes (or dumps) the checkpoint together, so the comparison is matched here too
        if trainer.training and self._positions:
            self.check(trainer)

    def check(self, trainer) -> None:
        """Compare the flags of all ranks; raise :class:`NonFiniteLossError` on every rank if one saw a bad loss."""
        first = self._first_bad if self._first_bad is not None else torch.tensor(self._NONE, dtype=torch.float64)
        if trainer.world_size > 1:
            first = trainer.strategy.reduce(first.to(trainer.strategy.root_device).clone(), reduce_op="min")
        index = float(first)
        positions, values = self._positions, self._values
        self._first_bad, self._positions, self._values = None, [], {}
        self._last_check_step = trainer.global_step
        if index == self._NONE:
            return
        step, epoch, batch_idx = positions[int(index)]
        value = values.get(int(index))
        if value is not None and bool(torch.isfinite(value).all()):
            value = None  # this rank's loss was fine there: another rank's was not
        raise NonFiniteLossError(self.message(step, epoch, batch_idx, value, last_good_checkpoint(trainer)))

    @staticmethod
    def message(step: int, epoch: int, batch_idx: int, loss: torch.Tensor | None, good: str | None) -> str:
        """The one-line error: what, where, the last good checkpoint, and what to try."""
        if loss is not None and loss.numel():
            flat = loss.detach().float().flatten()
            bad = flat[~torch.isfinite(flat)]
            value = f" ({(bad if bad.numel() else flat)[0].item()})"
        else:
            value = ""
        where = f"at step {step} (epoch {epoch}, batch {batch_idx})"
        if good:
            after = f"last good checkpoint: {good}; resume from it with --resume {good} and a lower learning rate"
        else:
            after = "no checkpoint was saved before it; lower the learning rate and start again"
        find = "or find the operation with --trainer.detect_anomaly true"
        return f"non-finite training loss{value} {where}; {after}, {find}"


def _is_float_tensor(value) -> bool:
    return isinstance(value, torch.Tensor) and value.is_floating_point()


def _logged_this_step(trainer) -> torch.Tensor | None:
    """Floating-point values logged by the current training step (before they are sent to the loggers).

    ``trainer.callback_metrics`` would also hold stale values from the last validation run; the
    training loop's own result collection holds only what training logged, at this step's values.
    It is not public API, so anything unexpected there means "nothing to check".
    """
    try:
        values = [v for v in trainer._results.metrics(True)["callback"].values() if _is_float_tensor(v)]
    except Exception:
        return None
    if not values:
        return None
    return torch.cat([v.detach().flatten().to(values[0].device, torch.float32) for v in values])


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
