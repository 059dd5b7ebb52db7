"""Surviving interruptions: atomic checkpoints, clear errors for bad ones, stop-and-resume on signals, SIGKILL.

Fast tests run in this process or in short subprocesses. The ``slow`` ones kill real processes
(SIGKILL during a save, SIGKILL mid-epoch) or run 2-process DDP. The SLURM round trip (SIGUSR1,
``scontrol requeue``) is in ``test_slurm.py``; here it is checked against a stand-in ``scontrol``.
"""

from __future__ import annotations

import os
import random
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import FAST, ROOT, evaluate, only_run, train
from lightning.pytorch import Callback

from litsuite.checkpoint_io import AtomicCheckpointIO, checkpoint_problem
from litsuite.requeue import EXIT_TERMINATED, slurm_batch_job

# 2,048 samples: 13 batches of 128 per epoch on one process (7 per rank on two), so a stop lands mid-epoch.
COMMON = ("--model", "linear_ae", "--data", "synthetic", "--logger", "csv", "--data.init_args.num_samples", "2048",
          "--data.init_args.batch_size", "128", *FAST)
TESTS = str(Path(__file__).resolve().parent)


class SignalAtStep(Callback):
    """Sends ``signum`` to this process after optimiser step ``step`` on rank ``rank`` only."""

    def __init__(self, step: int = 17, signum: int = int(signal.SIGTERM), rank: int = 0) -> None:
        self.step, self.signum, self.rank = step, signum, rank

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step and trainer.global_rank == self.rank:
            os.kill(os.getpid(), self.signum)


def signal_at(step: int, signum: int = signal.SIGTERM, rank: int = 0) -> tuple[str, ...]:
    return ("--trainer.callbacks+=test_recovery.SignalAtStep", "--trainer.callbacks.step", str(step),
            "--trainer.callbacks.signum", str(int(signum)), "--trainer.callbacks.rank", str(rank))


def run_train(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """train.py in a new process (as a user runs it), with this folder importable for the test callbacks."""
    # an in-process train() leaves LITSUITE_RUN_DIR set (for DDP ranks); a new run must not inherit it
    inherited = {k: v for k, v in os.environ.items() if k != "LITSUITE_RUN_DIR"}
    full_env = {**inherited, "PYTHONPATH": os.pathsep.join([TESTS, str(ROOT)]), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, stdin=subprocess.DEVNULL)


def state(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


def assert_same_training(a: dict, b: dict) -> None:
    """Same optimiser step, epoch and weights, bit for bit."""
    assert (a["global_step"], a["epoch"]) == (b["global_step"], b["epoch"])
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in (proc.stdout + proc.stderr).splitlines() if "error" in ln.lower()]


# --------------------------------------------------------------------------- atomic writes, corrupt files


def test_failed_save_keeps_the_previous_checkpoint_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    io, target = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, target)

    def dies_half_way(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(OSError, match="No space"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, target)
    monkeypatch.undo()
    assert torch.equal(torch.load(target, weights_only=True)["state_dict"]["w"], torch.ones(3))
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]


def test_runs_write_checkpoints_through_the_atomic_writer():
    from litsuite.cli import SuiteCLI
    from litsuite.registry import BASE_CONFIG, model_config
    from litsuite.requeue import PreemptionHandler

    cli = SuiteCLI(["--config", str(BASE_CONFIG), "--config", str(model_config("linear_ae"))],
                   "lit_modules.linear_ae.LinearAE", save_config=False)
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert sum(isinstance(c, PreemptionHandler) for c in cli.trainer.callbacks) == 1


@pytest.fixture
def trained_run() -> Path:
    assert train(*COMMON, "--data.init_args.num_samples", "256", "--trainer.max_epochs", "1") == 0
    return only_run()


def test_damaged_files_are_named_in_one_line(trained_run, tmp_path):
    good = trained_run / "checkpoints" / "last.ckpt"
    assert checkpoint_problem(good) is None
    garbage, tensor = tmp_path / "garbage.ckpt", tmp_path / "tensor.pt"
    garbage.write_bytes(b"\x00garbage" * 100)
    torch.save(torch.ones(3), tensor)
    assert "garbage.ckpt is not a readable checkpoint" in checkpoint_problem(garbage)
    assert "not a Lightning checkpoint" in checkpoint_problem(tensor)
    assert "no such checkpoint" in checkpoint_problem(tmp_path / "missing.ckpt")


def test_corrupt_checkpoint_by_hand_is_one_line_and_fails(trained_run, tmp_path):
    bad = tmp_path / "bad.ckpt"
    good = (trained_run / "checkpoints" / "last.ckpt").read_bytes()
    bad.write_bytes(good[: len(good) // 2])  # what a kill during a plain (non-atomic) write leaves

    trained = run_train(*COMMON, "--resume", str(bad), timeout=120)
    assert trained.returncode == 1, trained.stdout[-2000:] + trained.stderr[-2000:]
    lines = error_lines(trained)
    assert len(lines) == 1 and "bad.ckpt is not a readable checkpoint" in lines[0], lines
    assert "Traceback" not in trained.stdout + trained.stderr

    evaluated = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "--ckpt", str(bad)], capture_output=True,
                               text=True, timeout=120)
    assert evaluated.returncode != 0
    lines = error_lines(evaluated)
    assert len(lines) == 1 and "bad.ckpt is not a readable checkpoint" in lines[0], lines
    assert "Traceback" not in evaluated.stdout + evaluated.stderr


def test_evaluate_names_a_checkpoint_outside_any_run(trained_run, tmp_path, capsys):
    stray = tmp_path / "elsewhere" / "copy.ckpt"
    stray.parent.mkdir()
    stray.write_bytes((trained_run / "checkpoints" / "last.ckpt").read_bytes())
    assert evaluate("--ckpt", str(stray)) == 2
    assert "config.yaml" in capsys.readouterr().err


# --------------------------------------------------------------------------- stop on a signal, resume exactly


def test_sigterm_mid_epoch_saves_and_a_new_process_resumes_to_the_same_weights(monkeypatch):
    monkeypatch.setenv("LITSUITE_RUNS_DIR", "straight")
    assert train(*COMMON, "--trainer.max_epochs", "3") == 0
    straight = only_run(Path("straight"))

    monkeypatch.setenv("LITSUITE_RUNS_DIR", "stopped")
    stopped = run_train(*COMMON, "--trainer.max_epochs", "3", *signal_at(17), env={"LITSUITE_RUNS_DIR": "stopped"})
    assert stopped.returncode == EXIT_TERMINATED, stopped.stdout[-3000:] + stopped.stderr[-3000:]
    assert "stopped on SIGTERM at step 17 (epoch 1, batch 3)" in stopped.stdout
    run = only_run(Path("stopped"))
    assert state(run)["global_step"] == 17  # mid-epoch: 13 batches per epoch

    resumed = run_train(*COMMON, "--trainer.max_epochs", "3", "--resume", "auto", env={"LITSUITE_RUNS_DIR": "stopped"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Restored all states" in resumed.stdout + resumed.stderr
    assert "not resumable" not in resumed.stdout + resumed.stderr
    assert_same_training(state(run), state(straight))


def test_sigusr1_under_slurm_saves_requeues_once_and_exits_zero(tmp_path):
    """A stand-in ``scontrol`` records its arguments: the job asks for its own requeue, after the save."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "scontrol"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.calls"}\n'
                    f'test -f {tmp_path / "runs"}/*/checkpoints/last.ckpt || exit 3\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "1",
             "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_JOB_NAME": "litsuite-test",
             "SLURM_NODELIST": "localhost", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
             "LITSUITE_RUNS_DIR": str(tmp_path / "runs")}
    proc = run_train(*COMMON, "--trainer.max_epochs", "3", *signal_at(5, signal.SIGUSR1), env=slurm)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert (tmp_path / "scontrol.calls").read_text().split("\n")[:-1] == ["requeue 4242"]
    assert "preempted at step 5 (epoch 0, batch 4)" in output and "requeueing SLURM job 4242" in output
    run = only_run(tmp_path / "runs")
    assert run.name == "linear_ae-synthetic-slurm4242" and state(run)["global_step"] == 5
    assert not list(run.rglob("hpc_ckpt_*.ckpt")), "Lightning's in-handler requeue must be off"


def test_ddp_flag_comparisons_are_spaced_but_never_all_on_epoch_ends():
    """The ranks compare signal flags every ``_every`` steps; a spacing that divides the epoch length
    must not land every comparison on an epoch's last batch, where the handler does not act."""
    from types import SimpleNamespace

    from litsuite.requeue import PreemptionHandler

    checked: list[int] = []
    strategy = SimpleNamespace(reduce_boolean_decision=lambda flag, all: checked.append(trainer.global_step))
    trainer = SimpleNamespace(global_step=0, accumulate_grad_batches=1, num_training_batches=7, strategy=strategy)
    handler = PreemptionHandler()
    handler._every, handler._last_check = 7, 0
    for step in range(1, 43):
        trainer.global_step = step
        handler.on_train_batch_end(trainer, None, None, None, batch_idx=(step - 1) % 7)
    assert checked and all(step % 7 != 0 for step in checked), checked
    assert all(b - a <= 8 for a, b in zip([0, *checked], checked)), checked


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2", "SLURM_JOB_NAME": "train"}, True),
        ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2", "SLURM_JOB_NAME": "interactive"}, False),
        ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2", "SLURM_JOB_NAME": "bash"}, False),
        ({"SLURM_JOB_ID": "7", "SLURM_JOB_NAME": "train"}, False),  # salloc shell, python not started by srun
        ({"SLURM_NTASKS": "2"}, False),
    ],
)
def test_slurm_batch_job_detection_mirrors_lightning(env, expected, monkeypatch):
    for name in list(os.environ):
        if name.startswith("SLURM_") or name in ("TORCHELASTIC_RUN_ID", "GROUP_RANK"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert slurm_batch_job() is expected


# --------------------------------------------------------------------------- slow: real kills, DDP


@pytest.mark.slow
def test_two_process_ddp_stops_together_when_one_rank_is_signalled_and_resumes_exactly():
    """Only rank 1 gets SIGTERM; both ranks stop at the same later step (the ranks compare flags about
    every CHECK_EVERY_S), save once, and the resumed pair ends like a pair never stopped."""
    ddp = (*COMMON, "--devices", "2", "--trainer.max_epochs", "15")  # 7 batches per rank and epoch
    straight = run_train(*ddp, env={"LITSUITE_RUNS_DIR": "straight"})
    assert straight.returncode == 0, straight.stderr[-3000:]
    stopped = run_train(*ddp, *signal_at(10, rank=1), env={"LITSUITE_RUNS_DIR": "stopped"})
    assert stopped.returncode == EXIT_TERMINATED, stopped.stdout[-3000:] + stopped.stderr[-3000:]
    reports = re.findall(r"stopped on SIGTERM at step (\d+) \(epoch \d+, batch (\d+)\)", stopped.stdout)
    assert len(reports) == 1, stopped.stdout[-3000:]  # rank zero reports, once
    step, batch = map(int, reports[0])
    assert step >= 10 and 0 <= batch < 6 and state(only_run(Path("stopped")))["global_step"] == step
    resumed = run_train(*ddp, "--resume", "auto", env={"LITSUITE_RUNS_DIR": "stopped"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_training(state(only_run(Path("stopped"))), state(only_run(Path("straight"))))


@pytest.mark.slow
def test_run_killed_mid_epoch_resumes_from_its_last_checkpoint_to_the_same_weights():
    args = (*COMMON, "--trainer.max_epochs", "6", "--data.init_args.num_samples", "8192")
    straight = run_train(*args, env={"LITSUITE_RUNS_DIR": "straight"})
    assert straight.returncode == 0, straight.stderr[-3000:]

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "LITSUITE_RUNS_DIR": "killed"}
    victim = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not list(Path("killed").glob("*/checkpoints/last.ckpt")):
        assert victim.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.05)
    time.sleep(random.uniform(0.2, 0.6))  # into the next epoch
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL
    run = only_run(Path("killed"))
    assert checkpoint_problem(run / "checkpoints" / "last.ckpt") is None

    resumed = run_train(*args, "--resume", "auto", env={"LITSUITE_RUNS_DIR": "killed"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {run / 'checkpoints' / 'last.ckpt'}" in resumed.stdout + resumed.stderr
    assert_same_training(state(run), state(only_run(Path("straight"))))


SAVER = """
import os, random, signal, sys, time, torch
from litsuite.checkpoint_io import AtomicCheckpointIO
target, kills = sys.argv[1], int(sys.argv[2])
for _ in range(kills):  # one start-up of torch; each saver is a fork of this process
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        io, n = AtomicCheckpointIO(), 0
        while True:
            n += 1
            os.write(write_end, b"s")
            io.save_checkpoint({"state_dict": {"w": torch.full((4_000_000,), float(n))}, "n": n}, target)
    os.close(write_end)
    os.read(read_end, 1)
    os.read(read_end, 1)  # the first save is complete and the second has begun
    time.sleep(random.uniform(0.0, 0.03))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(read_end)
    print("killed", flush=True)
    sys.stdin.readline()  # the test has read the file
"""


@pytest.mark.slow
def test_sigkill_during_saves_never_leaves_a_corrupt_last_ckpt(tmp_path):
    """A process saving 16 MB checkpoints is killed a few ms into a save, again and again. (Writing with
    a plain ``torch.save(state, path)`` instead leaves a truncated file after most of these kills.)"""
    target = tmp_path / "checkpoints" / "last.ckpt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    kills = 10
    saver = subprocess.Popen([sys.executable, "-c", SAVER, str(target), str(kills)], env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert saver.stdout is not None and saver.stdin is not None
    for _ in range(kills):
        assert saver.stdout.readline() == "killed\n"
        assert checkpoint_problem(target) is None
        saved = torch.load(target, weights_only=True)
        assert saved["n"] >= 1 and torch.equal(saved["state_dict"]["w"], torch.full((4_000_000,), float(saved["n"])))
        saver.stdin.write("\n")
        saver.stdin.flush()
    assert saver.wait(timeout=30) == 0
    assert not [p for p in target.parent.iterdir() if p.name != "last.ckpt" and not p.name.startswith(".last.ckpt")]
