"""``fit``: build model, data and Trainer from the resolved arguments, then train."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_info

from datamodules.base import DataError
from litsuite import runs
from litsuite.checkpoint_io import CheckpointMismatch, checkpoint_problem
from litsuite.cli import ConfigError, SuiteCLI, one_line
from litsuite.guards import NonFiniteLossError, describe_failure
from litsuite.loggers import finish_wandb
from litsuite.requeue import TrainingStopped


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0")))


def _fail(message: str, run_dir: Path, fresh: bool) -> int:
    """Print one line and leave no half-made run directory behind."""
    print(f"train.py: error: {message}", flush=True)
    if fresh and _local_rank() == 0 and run_dir.is_dir() and not any(run_dir.glob("checkpoints/*.ckpt")):
        shutil.rmtree(run_dir, ignore_errors=True)
    return 1


def _restore(path: Path, content: bytes | None) -> None:
    """Put back a file as it was before this attempt (rank zero only; nothing if it did not exist)."""
    if content is not None and _local_rank() == 0:
        path.write_bytes(content)


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


def fit(args: list[str], model_class_path: str, run_dir: Path, ckpt: Path | None) -> int:
    """Train with LightningCLI arguments ``args``; resume from ``ckpt`` when given. Returns an exit code.

    A stop that every rank agreed on (a signal, a non-finite loss) is reported by rank zero, which
    also carries the exit code; the other ranks exit 0, so that neither ``srun --kill-on-bad-exit``
    nor Lightning's child-process watcher kills rank zero before it has said why.
    """
    fresh = ckpt is None
    # A resume saves its (possibly overridden) config over the run's before the checkpoint is read;
    # if the checkpoint then refuses the new settings, the run must keep the config it was made with.
    config_path = run_dir / runs.CONFIG_NAME
    config_before = config_path.read_bytes() if not fresh and config_path.is_file() else None
    if ckpt is not None and (problem := checkpoint_problem(ckpt)):  # before anything is built or written
        return _fail(f"--resume: {problem}", run_dir, fresh=False)
    try:
        cli = SuiteCLI(args, model_class_path)
        if _local_rank() == 0:  # fail on missing data before the Trainer makes any file
            cli.datamodule.prepare_data()
            cli.datamodule.setup("fit")
    except (ConfigError, DataError, ValueError, FileNotFoundError) as err:
        return _fail(one_line(str(err)), run_dir, fresh)
    rank_zero_info(f"run directory: {run_dir}" + (f" (resuming from {ckpt})" if ckpt else ""))
    rank_zero_info(describe_scale(cli))
    trainer = cli.trainer
    try:
        trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=str(ckpt) if ckpt else None)
    except TrainingStopped as stop:  # the handler has said what happened
        finish_wandb(trainer)
        _leave_process_group()
        return stop.exit_code if trainer.is_global_zero else 0
    except NonFiniteLossError as err:
        _leave_process_group()
        return _fail(str(err), run_dir, fresh) if trainer.is_global_zero else 0
    except CheckpointMismatch as err:
        _restore(config_path, config_before)
        return _fail(f"--resume: {err}", run_dir, fresh)
    except Exception as err:
        if (message := describe_failure(err)) is None:
            raise
        return _fail(message, run_dir, fresh)
    finish_wandb(trainer)
    rank_zero_info(f"done: checkpoints in {run_dir / 'checkpoints'}; evaluate with: python evaluate.py --run {run_dir}")
    return 0
