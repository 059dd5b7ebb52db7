"""Run directories are claimed atomically, SLURM jobs find theirs again, ``--run last`` skips runs
without a checkpoint, and a resumed run's ``metrics.csv`` holds each logged step once."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import FAST, ROOT, only_run, train
from lightning.pytorch import Callback

from litsuite import frontend, runs
from litsuite.loggers import logger_config

TINY = ("--model", "linear_ae", "--data", "synthetic", "--logger", "csv", "--data.init_args.num_samples", "256",
        "--trainer.max_epochs", "1", *FAST)
# Pins the clock of a train.py process to one second, so that two of them choose the same name.
FROZEN_CLOCK = """
import time
_strftime = time.strftime
time.strftime = lambda fmt, t=None: _strftime(fmt, time.localtime(1_000_000_000) if t is None else t)
"""


def frozen_clock(monkeypatch) -> None:
    real = time.strftime
    monkeypatch.setattr(time, "strftime", lambda fmt, t=None: real(fmt, time.localtime(1_000_000_000)))


def rows(run: Path) -> list[tuple[int, str]]:
    """(step, logged keys) of every row of a run's metrics.csv, in file order."""
    with open(run / "metrics.csv", newline="") as f:
        return [(int(r["step"]), ",".join(k for k, v in r.items() if v and k not in ("epoch", "step")))
                for r in csv.DictReader(f)]


# --------------------------------------------------------------------------- claiming a run directory


@pytest.mark.slow
def test_two_train_processes_started_in_the_same_second_get_their_own_run_directory(tmp_path):
    clock = tmp_path / "clock"
    clock.mkdir()
    (clock / "sitecustomize.py").write_text(FROZEN_CLOCK)
    env = {**{k: v for k, v in os.environ.items() if k != runs.RUN_DIR_ENV}, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(clock), str(ROOT)])}
    procs = [subprocess.Popen([sys.executable, str(ROOT / "train.py"), *TINY], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[-2000:] for o in outputs]
    made = sorted(Path("runs").iterdir())
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(1_000_000_000))
    assert [p.name for p in made] == [f"linear_ae-synthetic-{stamp}", f"linear_ae-synthetic-{stamp}-2"]
    for run in made:
        assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("last")) == ["last.ckpt"]
        logged = rows(run)
        assert logged and len(logged) == len(set(logged)), logged  # one session's rows, each once
    # the wandb run id derives from the directory name, so the two runs get two ids
    ids = {json.loads(logger_config("wandb", run))[1]["init_args"]["id"] for run in made}
    assert len(ids) == 2


def test_concurrent_claims_get_distinct_existing_directories(monkeypatch):
    frozen_clock(monkeypatch)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (runs.runs_root() / f"m-d-{stamp}").mkdir(parents=True)  # taken before, e.g. by another machine
    claimed: list[Path] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait()
        claimed.append(runs.new_run_dir("m", "d"))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.name for p in claimed) == sorted(f"m-d-{stamp}-{n}" for n in range(2, 10))
    assert all(p.is_dir() for p in claimed)


def test_a_refused_command_line_leaves_no_run_directory(capsys):
    assert train(*TINY, "--config", "missing.yaml") == 2
    assert "--config missing.yaml: no such file" in capsys.readouterr().err
    assert not list(Path("runs").glob("*"))


@pytest.fixture
def slurm(monkeypatch):
    for name in list(os.environ):
        if name.startswith("SLURM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_CLUSTER_NAME", "alpha")
    return monkeypatch


def test_every_task_and_session_of_a_slurm_job_gets_its_directory_and_no_other_job_does(slurm):
    first = runs.new_run_dir("capsule", "mnist")
    assert first.name == "capsule-mnist-slurm4242" and first.is_dir()
    assert runs.new_run_dir("capsule", "mnist") == first  # another task, or the job after a requeue
    assert runs.job_run_dir("capsule", "mnist") == first
    slurm.setenv("SLURM_CLUSTER_NAME", "beta")  # job 4242 of a second cluster sharing the folder
    assert runs.job_run_dir("capsule", "mnist") is None
    other = runs.new_run_dir("capsule", "mnist")
    assert other.name == "capsule-mnist-slurm4242-2"
    assert runs.new_run_dir("capsule", "mnist") == other
    slurm.setenv("SLURM_CLUSTER_NAME", "alpha")
    assert runs.new_run_dir("capsule", "mnist") == first


def test_a_directory_with_the_job_name_but_not_made_by_the_job_is_not_adopted(slurm):
    (runs.runs_root() / "capsule-mnist-slurm4242" / "checkpoints").mkdir(parents=True)
    assert runs.job_run_dir("capsule", "mnist") is None
    assert runs.new_run_dir("capsule", "mnist").name == "capsule-mnist-slurm4242-2"


def test_runs_started_one_after_another_in_an_interactive_allocation_are_separate_runs(slurm):
    slurm.setenv("SLURM_JOB_NAME", "interactive")
    first, second = runs.new_run_dir("capsule", "mnist"), runs.new_run_dir("capsule", "mnist")
    assert first != second and "slurm" not in first.name


def test_array_tasks_get_one_directory_each(slurm):
    slurm.setenv("SLURM_ARRAY_JOB_ID", "77")
    slurm.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert runs.new_run_dir("capsule", "mnist").name == "capsule-mnist-slurm77_3"


def test_a_requeued_job_resumes_its_own_run_even_when_a_newer_one_exists(slurm):
    own = runs.new_run_dir("linear_ae", "digits")
    newer = runs.runs_root() / "linear_ae-digits-20990101-000000"
    for run in (own, newer):
        (run / "checkpoints").mkdir(parents=True)
        (run / runs.LAST_CKPT).write_text("x")
        (run / runs.CONFIG_NAME).write_text("{}")
    os.utime(own / runs.CONFIG_NAME, (1000, 1000))
    assert runs.newest_resumable("linear_ae") == newer
    assert frontend.resolve_run("linear_ae", "digits", "auto") == (own, own / runs.LAST_CKPT)


# --------------------------------------------------------------------------- which run --run last means


def fake_run(name: str, age: int, checkpoint: str | None) -> Path:
    run = runs.runs_root() / name
    (run / "checkpoints").mkdir(parents=True)
    (run / runs.CONFIG_NAME).write_text("{}")
    if checkpoint:
        (run / "checkpoints" / checkpoint).write_text("x")
    os.utime(run / runs.CONFIG_NAME, (1000 + age, 1000 + age))
    return run


def test_run_last_is_the_newest_run_with_a_checkpoint_and_says_what_it_skipped(capsys):
    fake_run("linear_ae-digits-1", 1, "last.ckpt")
    best = fake_run("capsule-digits-2", 2, "best-epoch=0-step=5.ckpt")
    failed = fake_run("capsule-digits-3", 3, None)
    running = fake_run("linear_ae-digits-4", 4, None)
    assert runs.resolve_run("last") == best
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"using {best}" in err and str(running) in err and str(failed) in err and "no checkpoint" in err
    assert runs.pick_checkpoint(best).name.startswith("best-")


def test_run_last_with_no_checkpoint_anywhere_is_one_clear_error(capsys):
    fake_run("linear_ae-digits-1", 1, None)
    with pytest.raises(FileNotFoundError, match="has a checkpoint yet"):
        runs.resolve_run("last")
    with pytest.raises(FileNotFoundError, match="no checkpoint yet"):
        runs.pick_checkpoint(runs.runs_root() / "linear_ae-digits-1")


def test_runs_of_a_job_array_are_found_inside_their_sweep_folder(capsys):
    task = fake_run("linear_ae-sweep-77/task-1", 5, "last.ckpt")
    fake_run("capsule-digits-2", 2, "last.ckpt")
    assert runs.resolve_run("last") == task
    assert runs.newest_resumable("linear_ae") == task and runs.newest_resumable("capsule") != task


# --------------------------------------------------------------------------- metrics.csv across sessions

# 1,024 samples: 7 batches of 128 per epoch; with a row every 2 steps a session logs steps 1, 3, 5,
# validation at 6, then 7, 9, 11, 13 and validation at 13.
METRICS = ("--model", "linear_ae", "--data", "synthetic", "--logger", "csv", "--data.init_args.num_samples", "1024",
           "--data.init_args.batch_size", "128", "--trainer.log_every_n_steps", "2", *FAST)


def test_a_resumed_run_replaces_the_rows_logged_after_its_checkpoint():
    assert train(*METRICS, "--trainer.max_epochs", "1") == 0
    run = only_run()
    first = rows(run)
    assert [step for step, _ in first] == [1, 3, 5, 6]
    # what a session killed in epoch 1 leaves: rows logged after the epoch-0 checkpoint
    with open(run / "metrics.csv", "a", newline="") as f:
        f.write("1,7,999.0,,,,,,,,\n1,9,999.0,,,,,,,,\n")
    os.environ.pop(runs.RUN_DIR_ENV)  # set for DDP ranks by the first train(); a new command starts without it
    assert train(*METRICS, "--trainer.max_epochs", "2", "--resume", "auto") == 0
    logged = rows(run)
    assert logged[:4] == first and len(logged) == len(set(logged)), logged
    assert [step for step, _ in logged[4:]] == [7, 9, 11, 13, 13]  # the second epoch, once, validation last
    assert "999.0" not in (run / "metrics.csv").read_text()


def test_the_first_rows_of_a_session_replace_older_rows_from_their_step_on(tmp_path):
    from litsuite.csv_logger import RunCSVLogger

    (tmp_path / "metrics.csv").write_text("epoch,step,train/loss\n0,1,1.0\n0,3,0.5\n0,5,9.0\n0,7,9.0\n")
    logger = RunCSVLogger(save_dir=str(tmp_path), name="", version="")
    logger.log_metrics({"train/loss": 0.25, "epoch": 0}, step=5)
    logger.save()
    assert rows(tmp_path) == [(1, "train/loss"), (3, "train/loss"), (5, "train/loss")]
    assert "9.0" not in (tmp_path / "metrics.csv").read_text()
    logger.log_metrics({"train/loss": 0.2, "epoch": 0}, step=7)  # later rows of the session only append
    logger.save()
    assert [step for step, _ in rows(tmp_path)] == [1, 3, 5, 7]


class FlushAndDieAtStep(Callback):
    """After optimiser step ``step`` of a run's first session, flush the loggers (as they do every so many
    steps) and die by SIGKILL. A resumed session carries the callback in its config, and lives."""

    def __init__(self, step: int = 10) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step and trainer.ckpt_path is None:
            for logger in trainer.loggers:
                logger.save()
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.slow
def test_after_a_kill_past_the_last_checkpoint_the_resumed_run_logs_each_step_once():
    env = {**{k: v for k, v in os.environ.items() if k != runs.RUN_DIR_ENV}, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent), str(ROOT)])}

    def train_process(*args: str, runs_dir: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "train.py"), *METRICS, "--trainer.max_epochs", "2", *args],
                              capture_output=True, text=True, env={**env, runs.RUNS_DIR_ENV: runs_dir}, timeout=300,
                              stdin=subprocess.DEVNULL)

    assert train_process(runs_dir="straight").returncode == 0
    killed = train_process("--trainer.callbacks+=test_runs.FlushAndDieAtStep", "--trainer.callbacks.step", "11",
                           runs_dir="killed")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run = only_run(Path("killed"))
    assert [step for step, _ in rows(run)] == [1, 3, 5, 6, 7, 9]  # steps 7 and 9 come after the epoch-0 checkpoint
    resumed = train_process("--resume", "auto", runs_dir="killed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert rows(run) == rows(only_run(Path("straight")))
