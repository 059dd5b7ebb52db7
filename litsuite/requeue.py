"""Stop on SIGUSR1/SIGTERM/SIGINT at a safe point, save a checkpoint that resumes exactly, requeue under SLURM.

Lightning's own SLURM auto-requeue saves the checkpoint inside the signal handler, which runs a
barrier wherever the main thread happened to be; under DDP that deadlocks now and then. Here the
handlers only record the signal; between training batches the ranks agree (a tiny all-reduce)
whether any was signalled, all save ``last.ckpt`` (the file ``--resume auto`` reads), rank zero
runs ``scontrol requeue`` on SIGUSR1, and training ends with :class:`TrainingStopped`. The save is
mid-epoch, so the train loader is made resumable (:mod:`litsuite.resumable`) and the resumed run
ends with the same weights as one never stopped.

Ctrl-C (SIGINT) is treated like SIGTERM: without this, Lightning turns it into a KeyboardInterrupt
and a "graceful shutdown" that saves nothing, and the epoch's work is lost. A terminal sends it to
the whole foreground process group, so every DDP rank (and every data-loader worker) receives it;
the ranks agree as for SIGTERM, and workers, which inherit the handler, leave it to their process.
A second Ctrl-C falls through to Python's KeyboardInterrupt and Lightning's immediate shutdown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import torch
from lightning.fabric.plugins.environments import TorchElasticEnvironment
from lightning.pytorch import Callback

from litsuite.csv_logger import continue_metrics
from litsuite.loggers import finish_wandb
from litsuite.resumable import ResumableDataLoader, make_train_loader_resumable

EXIT_TERMINATED = 128 + signal.SIGTERM  # the shell's code for "ended by SIGTERM"; the state is saved
EXIT_INTERRUPTED = 128 + signal.SIGINT  # the shell's code for "ended by Ctrl-C"; the state is saved
# Signals whose second arrival ends the process at once: a person or a scheduler insisting.
INSISTENT = (signal.SIGTERM, signal.SIGINT)
# Under DDP the ranks compare their signal flags (one all-reduce) about this often, not at every step:
# fast steps would otherwise pay a collective each. The step time is measured over CALIBRATION_STEPS.
CHECK_EVERY_S = 0.5
CALIBRATION_STEPS = 10


def slurm_batch_job() -> bool:
    """True where Lightning would pick ``SLURMEnvironment``: tasks started by SLURM, not an interactive job."""
    return (
        bool(os.environ.get("SLURM_JOB_ID"))
        and "SLURM_NTASKS" in os.environ
        and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")
        and not TorchElasticEnvironment.detect()
    )


def slurm_job_id() -> str:
    """The id ``scontrol requeue`` needs: ``<array job>_<task>`` for array tasks."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job:
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ["SLURM_JOB_ID"]


def _announce(trainer, message: str) -> None:
    if trainer.is_global_zero:
        print(f"train.py: {message}", flush=True)


class TrainingStopped(Exception):
    """Training stopped on a signal after saving its state (already reported by rank zero).

    ``exit_code`` is what ``train.py`` returns: 0 once requeued, ``EXIT_TERMINATED`` after SIGTERM,
    1 when the requeue failed.
    """

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class PreemptionHandler(Callback):
    """Turns SIGUSR1 (SLURM's warning before the time limit), SIGTERM and Ctrl-C into a checkpoint and a clean stop.

    Args:
        requeue: on SIGUSR1, run ``scontrol requeue`` for this job after saving. Set by
            :mod:`litsuite.cli` for SLURM batch jobs; elsewhere SIGUSR1 keeps its default action.

    The signal is acted on at the end of a training batch that finishes an optimiser step and is
    not the last of its epoch (the epoch-end checkpoint follows shortly then), within about
    ``CHECK_EVERY_S`` of training; it may wait out a validation run. A second SIGTERM or Ctrl-C
    ends the process at once. A process started with SIGINT ignored (``nohup``, ``&`` in a script)
    keeps ignoring it.
    """

    def __init__(self, requeue: bool = False) -> None:
        self.requeue = requeue
        self.received: set[int] = set()
        self._previous: dict[int, object] = {}
        self._active = False
        self._trainer = None
        self._resume_batches = 0
        self._every: int | None = None  # steps between flag comparisons, the same on every rank
        self._calibration: tuple[int, float] = (0, 0.0)
        self._last_check = 0
        self._pid = os.getpid()

    def _signals(self) -> tuple[int, ...]:
        signals = (signal.SIGTERM, signal.SIGINT)
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN and signal.SIGINT not in self._previous:
            signals = (signal.SIGTERM,)  # started immune to Ctrl-C on purpose; stay so
        return (*signals, signal.SIGUSR1) if self.requeue else signals

    def _on_signal(self, signum: int, frame) -> None:
        if self._active and os.getpid() != self._pid:
            return  # a data-loader worker forked during training: its parent stops it when the run stops
        if self._active and not (signum in INSISTENT and signum in self.received):
            self.received.add(signum)  # only a flag: anything more could deadlock a collective in progress
            if signum == signal.SIGINT and self._trainer is not None and self._trainer.is_global_zero:
                # os.write: print() could re-enter a buffered stream the main thread is in the middle of
                os.write(2, b"\ntrain.py: Ctrl-C: saving at the next training step, then stopping; "
                         b"press Ctrl-C again to stop at once without saving\n")
            return
        # after training, or a second SIGTERM/Ctrl-C: behave as if this handler had never been installed
        previous = self._previous.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
            return
        signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in self._signals():
            previous = signal.signal(signum, self._on_signal)
            self._previous.setdefault(signum, previous)

    def _uninstall(self) -> None:
        # Lightning's own teardown may put this handler back afterwards; inactive, it defers to the previous one
        self._active = False
        if threading.current_thread() is threading.main_thread():
            for signum, previous in self._previous.items():
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            self.received.clear()
            self._active = True
            self._trainer = trainer
            self._pid = os.getpid()
            make_train_loader_resumable(trainer, pl_module)
            self._install()  # early, so a signal during start-up is kept rather than fatal

    def state_dict(self) -> dict:
        trainer = self._trainer
        loader = trainer.train_dataloader if trainer is not None else None
        if not isinstance(loader, ResumableDataLoader):
            return {"batches_done": 0}
        done = loader.state_dict()["batches_done"]
        return {"batches_done": done if done < trainer.num_training_batches else 0}  # 0: the epoch is complete

    def load_state_dict(self, state_dict: dict) -> None:
        self._resume_batches = int(state_dict.get("batches_done", 0))

    def on_train_start(self, trainer, pl_module) -> None:
        # Lightning hands a resumable loader its state only if the loader did not exist before the restore,
        # and trainer.estimated_stepping_batches (used in configure_optimizers) creates it earlier. So the
        # count travels in this callback's state, and is applied when the run resumes mid-epoch.
        loader = trainer.train_dataloader
        if trainer.fit_loop.restarting and self._resume_batches and isinstance(loader, ResumableDataLoader):
            loader.load_state_dict({"batches_done": self._resume_batches})
        self._resume_batches = 0
        self._every = 1 if trainer.world_size == 1 else None  # one process: checking costs nothing
        self._calibration = (trainer.global_step, time.monotonic())
        self._last_check = trainer.global_step
        # Lightning registers its SIGTERM handler after setup; it broadcasts inside the handler. Replace it.
        self._install()
        continue_metrics(trainer)  # a resumed session's rows replace those logged after its checkpoint

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._uninstall()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._uninstall()  # Lightning skips the teardown hooks after an exception

    def _due(self, trainer) -> bool:
        """Whether the ranks compare flags at this step; decided from values every rank shares."""
        start_step, start_time = self._calibration
        if self._every is None and trainer.global_step - start_step >= CALIBRATION_STEPS:
            seconds = (time.monotonic() - start_time) / max(1, trainer.global_step - start_step)
            local = torch.tensor(seconds, device=trainer.strategy.root_device)
            slowest = trainer.strategy.reduce(local, reduce_op="max")
            # at least twice an epoch: with fast steps the time rule alone could skip whole epochs, and a
            # signal that arrives then would only be acted on after training ended
            batches = trainer.num_training_batches
            per_epoch = max(1, int(batches) // 2) if batches != float("inf") else 1000
            self._every = max(1, min(1000, per_epoch, int(CHECK_EVERY_S / max(float(slowest), 1e-6))))
        # counted from the last comparison, not as multiples: those could all fall on epoch ends, never checked
        return self._every is None or trainer.global_step - self._last_check >= self._every

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        stepped = (batch_idx + 1) % trainer.accumulate_grad_batches == 0
        last_of_epoch = batch_idx + 1 >= trainer.num_training_batches
        # all three depend only on values every rank shares, so the collectives below stay matched
        if not stepped or last_of_epoch or not self._due(trainer):
            return
        self._last_check = trainer.global_step
        if not trainer.strategy.reduce_boolean_decision(bool(self.received), all=False):
            return
        requeue = self.requeue and trainer.strategy.reduce_boolean_decision(
            signal.SIGUSR1 in self.received, all=False
        )
        # Ctrl-C names the stop only when no rank was sent SIGTERM (a scheduler's stop takes precedence)
        interrupted = not requeue and not trainer.strategy.reduce_boolean_decision(
            signal.SIGTERM in self.received, all=False
        )
        path = self.save(trainer)
        where = f"step {trainer.global_step} (epoch {trainer.current_epoch}, batch {batch_idx})"
        if not requeue:
            cause, code = ("Ctrl-C (SIGINT)", EXIT_INTERRUPTED) if interrupted else ("SIGTERM", EXIT_TERMINATED)
            message = (f"stopped on {cause} at {where}; saved {path}; continue with: "
                       f"python train.py --resume {path.parent.parent} (or --resume auto for this model's newest run)")
            _announce(trainer, message)
            raise TrainingStopped(message, code)
        # Said before the requeue: once SLURM cancels the step, what the tasks print may no longer reach the log.
        _announce(trainer, f"preempted at {where}; saved {path}; requeueing SLURM job {slurm_job_id()}")
        # SLURM stops every process of the job once it is requeued, wandb's service among them: close
        # this session's wandb run and wandb's connection to its service first, while both still work.
        finish_wandb(trainer, teardown=True)
        outcome = self.run_requeue() if trainer.is_global_zero else None
        ok, detail = trainer.strategy.broadcast(outcome, src=0)  # every rank leaves with rank zero's outcome
        if ok:
            raise TrainingStopped(f"preempted at {where}; {detail}", 0)
        message = f"error: {detail}; resubmit the job to continue from {path}"
        _announce(trainer, message)
        raise TrainingStopped(message, 1)

    @staticmethod
    def save(trainer) -> Path:
        """Save the resume checkpoint on all ranks: the ``last.ckpt`` of the run's ``ModelCheckpoint``."""
        callback = trainer.checkpoint_callback
        if callback is not None and callback.dirpath:
            path = Path(callback.format_checkpoint_name({}, callback.CHECKPOINT_NAME_LAST))
            # the saved ModelCheckpoint state must name this file, or its next save would go to last-v1.ckpt
            callback.last_model_path = str(path)
        else:
            path = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        # a collective ending in a barrier: when it returns, the file is complete for every rank
        trainer.save_checkpoint(path, weights_only=False)
        return path

    @staticmethod
    def run_requeue() -> tuple[bool, str]:
        """``scontrol requeue`` this job; (succeeded, what happened)."""
        job = slurm_job_id()
        try:
            proc = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as err:
            return False, f"could not requeue SLURM job {job} ({err})"
        if proc.returncode != 0:
            return False, f"could not requeue SLURM job {job} (scontrol: {proc.stderr.strip() or proc.returncode})"
        return True, f"SLURM job {job} requeued"
