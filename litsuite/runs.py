"""Run directories: ``runs/<model>-<data>-<stamp>/`` with config, checkpoints and logs.

No torch import here: the front end resolves directories before the heavy imports.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

RUNS_DIR_ENV = "LITSUITE_RUNS_DIR"  # where run directories are made (default: ./runs)
RUN_DIR_ENV = "LITSUITE_RUN_DIR"  # this exact run directory; DDP ranks and requeued jobs inherit it
LAST_CKPT = Path("checkpoints") / "last.ckpt"
CONFIG_NAME = "config.yaml"  # the resolved config LightningCLI saves at the start of every run


def runs_root() -> Path:
    """The folder holding all run directories."""
    return Path(os.environ.get(RUNS_DIR_ENV, "runs"))


def new_run_dir(model: str, data: str) -> Path:
    """A fresh run directory name, unique per SLURM job or per second elsewhere.

    Under SLURM every task of a job (and the job after a requeue) must agree on the directory,
    so the job id names it instead of the clock.
    """
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    if job:
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        stamp = f"slurm{job}" + (f"_{task}" if task else "")
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
    path = runs_root() / f"{model}-{data}-{stamp}"
    suffix = 1
    while not job and path.exists():  # two runs started in the same second
        suffix += 1
        path = runs_root() / f"{model}-{data}-{stamp}-{suffix}"
    return path


def list_runs(model: str | None = None) -> list[Path]:
    """Run directories (those holding a ``config.yaml``), oldest first by modification time."""
    root = runs_root()
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if (p / CONFIG_NAME).is_file()]
    if model is not None:
        runs = [p for p in runs if p.name.startswith(f"{model}-")]
    return sorted(runs, key=lambda p: (p / CONFIG_NAME).stat().st_mtime)


def newest_resumable(model: str) -> Path | None:
    """The newest run of ``model`` that has a ``checkpoints/last.ckpt``."""
    for run in reversed(list_runs(model)):
        if (run / LAST_CKPT).is_file():
            return run
    return None


def run_dir_of(path: Path) -> Path:
    """The run directory of ``runs/<run>/checkpoints/x.ckpt``, or ``path`` itself when it is not a file."""
    return path.parent.parent if path.is_file() else path


def resolve_run(spec: str) -> Path:
    """A run directory from ``last``, a run name, a run directory or a checkpoint path."""
    if spec == "last":
        runs = list_runs()
        if not runs:
            raise FileNotFoundError(f"no runs found under {runs_root()}/; train one with: python train.py --model NAME")
        return runs[-1]
    path = Path(spec)
    if path.is_file():  # runs/<run>/checkpoints/x.ckpt
        return run_dir_of(path)
    for candidate in (path, runs_root() / spec):
        if (candidate / CONFIG_NAME).is_file():
            return candidate
    raise FileNotFoundError(f"no run '{spec}': expected a run directory holding config.yaml, e.g. {runs_root()}/<run>")


def pick_checkpoint(run_dir: Path, which: str = "best") -> Path:
    """``best-*.ckpt`` (newest) or ``last.ckpt`` of a run; falls back to ``last.ckpt``."""
    checkpoints = run_dir / "checkpoints"
    best = sorted(checkpoints.glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
    if which == "best" and best:
        return best[-1]
    if (run_dir / LAST_CKPT).is_file():
        return run_dir / LAST_CKPT
    raise FileNotFoundError(f"{checkpoints}: no checkpoint yet (training may have stopped before its first save)")
