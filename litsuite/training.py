"""``fit``: build model, data and Trainer from the resolved arguments, then train."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.utilities import rank_zero_info

from datamodules.base import DataError
from litsuite import preflight, runs
from litsuite.checkpoint_io import CheckpointMismatch, checkpoint_problem, describe_state_dict_mismatch, saved_step
from litsuite.cli import ConfigError, SuiteCLI, one_line
from litsuite.guards import NonFiniteLossError, describe_failure
from litsuite.loggers import finish_wandb
from litsuite.requeue import TrainingStopped, slurm_batch_job
from litsuite.sizing import SizeError, size_summary

EXIT_ERROR = 1
EXIT_USAGE = 2  # a bad command line or config value, as for argparse


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0")))


class Attempt:
    """One training session of a run, and what to undo if it fails.

    A fresh run directory that never received a checkpoint is removed (nothing could resume from
    it). A resumed run gets its ``config.yaml`` back, which LightningCLI rewrites at the start of
    ``fit`` with this session's overrides, unless this session already saved a checkpoint under them.
    """

    def __init__(self, run_dir: Path, fresh: bool) -> None:
        self.run_dir, self.fresh = run_dir, fresh
        self.config_path = run_dir / runs.CONFIG_NAME
        self.config_before = self.config_path.read_bytes() if not fresh and self.config_path.is_file() else None
        # its time too: runs are ordered by it (``--resume auto``, ``evaluate.py --run last``)
        self.config_times = self._times(self.config_path) if self.config_before is not None else None
        self.checkpoints_before = self._checkpoints()

    @staticmethod
    def _times(path: Path) -> tuple[int, int]:
        stat = path.stat()
        return stat.st_atime_ns, stat.st_mtime_ns

    def _checkpoints(self) -> dict[str, int]:
        found = {}
        for path in self.run_dir.glob("checkpoints/*.ckpt"):
            try:
                found[path.name] = path.stat().st_mtime_ns
            except FileNotFoundError:  # replaced while listing
                continue
        return found

    def undo(self) -> None:
        """Remove or restore what this session wrote (rank zero of each machine only)."""
        if _local_rank() != 0:
            return
        saved = self._checkpoints()
        if self.fresh and not saved:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        elif self.config_before is not None and saved == self.checkpoints_before:
            if not self.config_path.is_file() or self.config_path.read_bytes() != self.config_before:
                self.config_path.write_bytes(self.config_before)
            os.utime(self.config_path, ns=self.config_times)

    def fail(self, message: str, code: int = EXIT_ERROR) -> int:
        """Print one line on stderr, undo this session's files, and return the exit code."""
        print(f"train.py: error: {message}", file=sys.stderr, flush=True)
        self.undo()
        return code


def describe_misconfiguration(err: MisconfigurationException) -> str:
    """One line for a Trainer setting Lightning refused (``max_epochs -2``, more GPUs than exist, ...)."""
    text = " ".join(str(err).split())
    if (asked := re.search(r"You requested gpu: \[(.*?)\]", text)) or "devices but this machine only has" in text:
        count = len(asked.group(1).split(",")) if asked else "more"
        gpus = torch.cuda.device_count()
        return (
            f"this machine has {gpus} GPU{'s' if gpus != 1 else ''} and {preflight.cpu_cores()} CPU cores; "
            f"--devices {count} asks for more GPUs than exist; use --devices {gpus} or fewer"
        )
    return text


def sizes_problem(cli: SuiteCLI, oversubscribe: bool) -> str | None:
    """Sizes that would fail later or swamp the machine, as one line; None when they are fine.

    Checks what the config files gave as well as the command line: the per-device batch (of a data
    module that has one), and CPU processes per machine against its cores (unless ``oversubscribe``,
    or under SLURM, whose job sizes are trusted).
    """
    batch = getattr(cli.datamodule, "batch_size", None)
    if isinstance(batch, int) and batch < 1:
        return f"batch_size {batch}: must be at least 1 (--data.init_args.batch_size)"
    trainer = cli.trainer
    if oversubscribe or slurm_batch_job():
        return None
    accelerator = "cpu" if isinstance(trainer.accelerator, CPUAccelerator) else type(trainer.accelerator).__name__
    return preflight.too_many_processes(trainer.num_devices, preflight.cpu_cores(), torch.cuda.device_count(),
                                        accelerator)


def _leave_process_group() -> None:
    """Shut DDP down on every rank together after a stop every rank agreed on. A rank that tears its
    gloo connections down while another still uses them can abort (SIGABRT, "terminate called
    without an active exception"), replacing the exit code with -6; the barrier orders it."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def describe_scale(cli: SuiteCLI) -> str:
    """One line on the effective batch size: per-device batch × devices × nodes × accumulation."""
    trainer = cli.trainer
    batch = getattr(cli.datamodule, "batch_size", None)
    if batch is None:
        return f"world size {trainer.world_size}"
    effective = batch * trainer.world_size * trainer.accumulate_grad_batches
    return (
        f"batch {batch}/device × {trainer.world_size} process(es) × {trainer.accumulate_grad_batches} accumulation"
        f" = effective batch {effective}; learning rates are used as configured (no automatic scaling)"
    )


def fit(
    args: list[str], model_class_path: str, run_dir: Path, ckpt: Path | None, oversubscribe: bool = False
) -> int:
    """Train with LightningCLI arguments ``args``; resume from ``ckpt`` when given. Returns an exit code.

    A stop that every rank agreed on (a signal, a non-finite loss) is reported by rank zero, which
    also carries the exit code; the other ranks exit 0, so that neither ``srun --kill-on-bad-exit``
    nor Lightning's child-process watcher kills rank zero before it has said why. Every failure,
    an unforeseen exception or Ctrl-C included, undoes what the session wrote (:class:`Attempt`).
    """
    attempt = Attempt(run_dir, fresh=ckpt is None)
    try:
        return _fit(attempt, args, model_class_path, ckpt, oversubscribe)
    except BaseException:
        attempt.undo()
        raise


def _fit(attempt: Attempt, args: list[str], model_class_path: str, ckpt: Path | None, oversubscribe: bool) -> int:
    run_dir = attempt.run_dir
    if ckpt is not None and (problem := checkpoint_problem(ckpt, model_class_path)):  # before anything is written
        return attempt.fail(f"--resume: {problem}")
    try:
        cli = SuiteCLI(args, model_class_path)
    except MisconfigurationException as err:
        return attempt.fail(describe_misconfiguration(err), EXIT_USAGE)
    except (ConfigError, ValueError) as err:  # a key or a value the model, data or Trainer refused
        return attempt.fail(one_line(str(err)), EXIT_USAGE)
    except (DataError, FileNotFoundError) as err:
        return attempt.fail(one_line(str(err)))
    if problem := sizes_problem(cli, oversubscribe):  # before any process is started or file made
        return attempt.fail(problem, EXIT_USAGE)
    try:  # parameters and memory per step, measured on a copy; refused when a step cannot fit
        rank_zero_info(size_summary(cli.model, cli.datamodule, cli.trainer))
    except SizeError as err:
        return attempt.fail(str(err), EXIT_USAGE)
    try:
        if _local_rank() == 0:  # fail on missing data before the Trainer makes any file
            cli.datamodule.prepare_data()
            cli.datamodule.setup("fit")
    except (DataError, ValueError, FileNotFoundError) as err:
        return attempt.fail(one_line(str(err)))
    rank_zero_info(f"run directory: {run_dir}" + (f" (resuming from {ckpt})" if ckpt else ""))
    rank_zero_info(describe_scale(cli))
    trainer = cli.trainer
    start_step = saved_step(ckpt) if ckpt is not None else 0  # read now: this session rewrites last.ckpt
    try:
        trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=str(ckpt) if ckpt else None)
    except TrainingStopped as stop:  # the handler has said what happened
        finish_wandb(trainer)
        _leave_process_group()
        return stop.exit_code if trainer.is_global_zero else 0
    except NonFiniteLossError as err:
        _leave_process_group()
        return attempt.fail(str(err)) if trainer.is_global_zero else 0
    except CheckpointMismatch as err:
        return attempt.fail(f"--resume: {err}")
    except RuntimeError as err:
        if (message := describe_failure(err) or _state_dict_mismatch(err, ckpt)) is None:
            raise
        return attempt.fail(message)
    except Exception as err:
        if (message := describe_failure(err)) is None:
            raise
        return attempt.fail(message)
    finish_wandb(trainer)
    return _report_done(attempt, trainer, ckpt, start_step)


def _state_dict_mismatch(err: RuntimeError, ckpt: Path | None) -> str | None:
    """One line for weights that do not fit the model as configured (other sizes, another model)."""
    if ckpt is None or (detail := describe_state_dict_mismatch(str(err))) is None:
        return None
    return f"--resume: {ckpt} does not fit the model as configured ({detail}); resume with the run's own settings"


def _report_done(attempt: Attempt, trainer, ckpt: Path | None, start: int) -> int:
    """Say truthfully what this session did: trained (and where the checkpoints are), or nothing."""
    run_dir = attempt.run_dir
    if trainer.global_step == start:
        if ckpt is None:
            if not trainer.is_global_zero:
                return EXIT_ERROR
            return attempt.fail(
                f"nothing was trained: the Trainer stopped before its first step (max_epochs {trainer.max_epochs}, "
                f"max_steps {trainer.max_steps}, limit_train_batches {trainer.limit_train_batches}); no run was kept"
            )
        rank_zero_info(
            f"nothing more to train: {run_dir} already reached step {start} (max_epochs {trainer.max_epochs}, "
            f"max_steps {trainer.max_steps}); raise --trainer.max_epochs to continue it"
        )
        return 0
    checkpoints = run_dir / "checkpoints"
    if not any(checkpoints.glob("*.ckpt")):
        rank_zero_info(f"done: trained to step {trainer.global_step}; no checkpoint was written (checkpointing off)")
        return 0
    rank_zero_info(f"done: checkpoints in {checkpoints}; evaluate with: python evaluate.py --run {run_dir}")
    return 0
