"""Run directories: ``runs/<model>-<data>-<stamp>/`` with config, checkpoints and logs.

A run directory is claimed when its name is chosen, by creating it: ``os.mkdir`` fails when the
name is taken, so two ``train.py`` started in the same second (on one machine or on two sharing
the folder) never share one. No torch import here: the front end resolves directories before the
heavy imports.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

RUNS_DIR_ENV = "LITSUITE_RUNS_DIR"  # where run directories are made (default: ./runs)
RUN_DIR_ENV = "LITSUITE_RUN_DIR"  # this exact run directory; DDP ranks and requeued jobs inherit it
LAST_CKPT = Path("checkpoints") / "last.ckpt"
CONFIG_NAME = "config.yaml"  # the resolved config LightningCLI saves at the start of every run
JOB_MARKER = ".slurm-job"  # in a run directory named by a SLURM job: which job claimed it

_claimed: list[Path] = []  # directories this process created, so a failed start can take them back


def runs_root() -> Path:
    """The folder holding all run directories."""
    return Path(os.environ.get(RUNS_DIR_ENV, "runs"))


def slurm_job() -> str | None:
    """``slurm<job>`` (``slurm<array job>_<task>`` in an array) inside a SLURM batch job, else None.

    An interactive allocation (``salloc``, ``srun --pty bash``) is no batch job: runs started from its
    shell one after another are separate runs, named by the clock (Lightning, too, manages them as
    outside SLURM).
    """
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    if not job or os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return None
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"slurm{job}" + (f"_{task}" if task else "")


def job_identity() -> str:
    """What tells this job from another with the same id: clusters sharing a file system number jobs alike."""
    return f"{os.environ.get('SLURM_CLUSTER_NAME', '')}/{slurm_job()}\n"


def _candidates(base: Path):
    """``base``, ``base-2``, ``base-3``, ...: the names tried in turn until one is free."""
    yield base
    for n in itertools.count(2):
        yield base.with_name(f"{base.name}-{n}")


def _claim_for_job(base: Path) -> Path:
    """The directory of this SLURM job: made with the job's marker inside, or found again by it.

    Every task of the job and every session after a requeue reach the same directory; a different
    job never adopts it. The directory appears complete with its marker (made under a temporary
    name, then renamed), so a task never sees it without one.
    """
    identity = job_identity()
    for path in _candidates(base):
        staging = base.parent / f".claim-{path.name}-{uuid.uuid4().hex}"
        staging.mkdir()
        (staging / JOB_MARKER).write_text(identity)
        try:
            staging.rename(path)  # atomic; fails when ``path`` exists and holds anything
            _claimed.append(path)
            return path
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
        marker = path / JOB_MARKER
        if marker.is_file() and marker.read_text() == identity:
            return path
    raise AssertionError("unreachable")


def new_run_dir(model: str, data: str) -> Path:
    """Create and return a fresh run directory.

    Named by the clock (``-2``, ``-3``, ... when that name is taken, even a moment later by
    another process), or under SLURM by the job id: every task of a job, and the job after a
    requeue, must reach the same directory, and a second job must not.
    """
    root = runs_root()
    root.mkdir(parents=True, exist_ok=True)
    job = slurm_job()
    if job:
        return _claim_for_job(root / f"{model}-{data}-{job}")
    for path in _candidates(root / f"{model}-{data}-{time.strftime('%Y%m%d-%H%M%S')}"):
        try:
            path.mkdir()
        except FileExistsError:
            continue
        _claimed.append(path)
        return path
    raise AssertionError("unreachable")


def job_run_dir(model: str, data: str) -> Path | None:
    """The run directory this SLURM job claimed in an earlier session (before a requeue), if any."""
    job = slurm_job()
    if not job:
        return None
    identity = job_identity()
    for path in _candidates(runs_root() / f"{model}-{data}-{job}"):
        if not path.is_dir():
            return None
        if (path / JOB_MARKER).is_file() and (path / JOB_MARKER).read_text() == identity:
            return path
    return None


def release_claims() -> None:
    """Remove the run directories this process created while they hold nothing (a start that failed)."""
    while _claimed:
        path = _claimed.pop()
        if path.is_dir() and {p.name for p in path.iterdir()} <= {JOB_MARKER}:
            shutil.rmtree(path, ignore_errors=True)


def list_runs(model: str | None = None) -> list[Path]:
    """Run directories (those holding a ``config.yaml``), oldest first by modification time.

    One level of nesting is looked into as well: a SLURM job array keeps one run per task in
    ``runs/<model>-sweep-<job>/task-<i>/``.
    """
    root = runs_root()
    if not root.is_dir():
        return []
    runs = []
    for top in root.iterdir():
        if model is not None and not top.name.startswith(f"{model}-"):
            continue
        if (top / CONFIG_NAME).is_file():
            runs.append(top)
        elif top.is_dir():
            runs += [p for p in top.iterdir() if (p / CONFIG_NAME).is_file()]
    return sorted(runs, key=lambda p: (p / CONFIG_NAME).stat().st_mtime)


def has_checkpoint(run: Path) -> bool:
    """Whether :func:`pick_checkpoint` finds something to evaluate in ``run``."""
    return (run / LAST_CKPT).is_file() or any((run / "checkpoints").glob("best-*.ckpt"))


def newest_resumable(model: str) -> Path | None:
    """The newest run of ``model`` that has a ``checkpoints/last.ckpt``."""
    for run in reversed(list_runs(model)):
        if (run / LAST_CKPT).is_file():
            return run
    return None


def run_dir_of(path: Path) -> Path:
    """The run directory of ``runs/<run>/checkpoints/x.ckpt``, or ``path`` itself when it is not a file."""
    return path.parent.parent if path.is_file() else path


def newest_evaluable() -> Path:
    """The newest run holding a checkpoint; one line on stderr names newer runs passed over and why."""
    runs = list_runs()
    if not runs:
        raise FileNotFoundError(f"no runs found under {runs_root()}/; train one with: python train.py --model NAME")
    skipped = []
    for run in reversed(runs):
        if has_checkpoint(run):
            if skipped:
                program = Path(sys.argv[0]).name or "litsuite"
                print(f"{program}: using {run}, the newest run with a checkpoint; skipped newer "
                      f"{', '.join(map(str, skipped))} (no checkpoint yet: still before its first save, "
                      "or stopped before it)", file=sys.stderr, flush=True)
            return run
        skipped.append(run)
    raise FileNotFoundError(
        f"no run under {runs_root()}/ has a checkpoint yet ({', '.join(map(str, skipped))} stopped or are still "
        "before their first save); wait for a first save, or train one: python train.py --model NAME"
    )


def resolve_run(spec: str) -> Path:
    """A run directory from ``last``, a run name, a run directory or a checkpoint path.

    ``last`` is the newest run that can be evaluated, i.e. holds a checkpoint.
    """
    if spec == "last":
        return newest_evaluable()
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
