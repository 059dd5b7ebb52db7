"""Ctrl-C: the first saves ``last.ckpt`` at the next training step and exits 130 with the resume
command; a second stops at once. The signal goes to the whole process group, as a terminal sends it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import FAST, ROOT, only_run, train
from lightning.pytorch import Callback

from litsuite.requeue import EXIT_INTERRUPTED, EXIT_TERMINATED, PreemptionHandler, TrainingStopped

# 2,048 samples: 13 batches of 128 per epoch on one process (7 per rank on two), so a stop lands mid-epoch.
COMMON = ("--model", "linear_ae", "--data", "synthetic", "--logger", "csv", "--data.init_args.num_samples", "2048",
          "--data.init_args.batch_size", "128", *FAST)
TESTS = str(Path(__file__).resolve().parent)


class CtrlCAtStep(Callback):
    """After optimiser step ``step``, rank zero sends SIGINT ``times`` times to its process group (a terminal's way)."""

    def __init__(self, step: int = 17, times: int = 1) -> None:
        self.step, self.times = step, times

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step and trainer.global_rank == 0:
            for _ in range(self.times):
                os.killpg(os.getpgrp(), signal.SIGINT)


def ctrl_c_at(step: int, times: int = 1) -> tuple[str, ...]:
    return ("--trainer.callbacks+=test_interrupt.CtrlCAtStep", "--trainer.callbacks.step", str(step),
            "--trainer.callbacks.times", str(times))


def run_in_own_group(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """train.py in a new process group (a terminal's foreground job), so a group signal reaches only it."""
    inherited = {k: v for k, v in os.environ.items() if k != "LITSUITE_RUN_DIR"}
    full_env = {**inherited, "PYTHONPATH": os.pathsep.join([TESTS, str(ROOT)]), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True,
                          env=full_env, timeout=600, stdin=subprocess.DEVNULL, start_new_session=True)


def weights(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


# --------------------------------------------------------------------------- the handler itself


@pytest.fixture
def handler():
    handler = PreemptionHandler()
    handler._active, handler._trainer = True, SimpleNamespace(is_global_zero=True)
    handler._install()
    yield handler
    handler._uninstall()


def test_first_ctrl_c_is_noted_and_acknowledged_the_second_raises_keyboard_interrupt(handler, capfd):
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # Python runs the handler between bytecodes, here at once
    except KeyboardInterrupt:
        pytest.fail("the first Ctrl-C raised KeyboardInterrupt: the epoch's work would be lost")
    assert signal.SIGINT in handler.received
    assert "Ctrl-C: saving at the next training step" in capfd.readouterr().err
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)


def test_a_process_started_immune_to_ctrl_c_stays_immune():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # what nohup or `cmd &` in a script gives
    try:
        handler = PreemptionHandler()
        handler._active = True
        handler._install()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == handler._on_signal
        handler._uninstall()
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.mark.parametrize(("received", "code", "cause"), [
    ({signal.SIGINT}, EXIT_INTERRUPTED, "Ctrl-C (SIGINT)"),
    ({signal.SIGTERM}, EXIT_TERMINATED, "SIGTERM"),
    ({signal.SIGINT, signal.SIGTERM}, EXIT_TERMINATED, "SIGTERM"),
])
def test_the_stop_names_its_cause_exit_code_and_the_resume_command(received, code, cause, monkeypatch, capsys):
    strategy = SimpleNamespace(reduce_boolean_decision=lambda flag, all: flag)
    trainer = SimpleNamespace(global_step=17, current_epoch=1, accumulate_grad_batches=1, num_training_batches=13,
                              strategy=strategy, is_global_zero=True)
    handler = PreemptionHandler()
    handler._every, handler.received = 1, set(received)
    monkeypatch.setattr(PreemptionHandler, "save", staticmethod(lambda t: Path("runs/r/checkpoints/last.ckpt")))
    with pytest.raises(TrainingStopped) as stop:
        handler.on_train_batch_end(trainer, None, None, None, batch_idx=3)
    assert stop.value.exit_code == code
    said = capsys.readouterr().out
    assert f"stopped on {cause} at step 17 (epoch 1, batch 3)" in said
    assert "continue with: python train.py --resume runs/r" in said and "--resume auto" in said


# --------------------------------------------------------------------------- real processes


@pytest.mark.slow
def test_ctrl_c_mid_epoch_saves_exits_130_and_the_resumed_run_ends_like_an_uninterrupted_one(monkeypatch):
    monkeypatch.setenv("LITSUITE_RUNS_DIR", "straight")
    assert train(*COMMON, "--trainer.max_epochs", "3") == 0
    straight = only_run(Path("straight"))

    stopped = run_in_own_group(*COMMON, "--trainer.max_epochs", "3", *ctrl_c_at(17),
                               env={"LITSUITE_RUNS_DIR": "ctrl-c"})
    output = stopped.stdout + stopped.stderr
    assert stopped.returncode == EXIT_INTERRUPTED, output[-3000:]
    run = only_run(Path("ctrl-c"))
    assert "Ctrl-C: saving at the next training step" in stopped.stderr
    assert "stopped on Ctrl-C (SIGINT) at step 17 (epoch 1, batch 3)" in stopped.stdout
    assert f"continue with: python train.py --resume {run.resolve()}" in stopped.stdout
    assert "KeyboardInterrupt" not in output and "Traceback" not in output
    assert weights(run)["global_step"] == 17  # mid-epoch: 13 batches per epoch

    resumed = run_in_own_group(*COMMON, "--trainer.max_epochs", "3", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = weights(run), weights(straight)
    assert (a["global_step"], a["epoch"]) == (b["global_step"], b["epoch"])
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in b["state_dict"])
    assert (run / "metrics.csv").read_text().count("\n") == (straight / "metrics.csv").read_text().count("\n")


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once_without_saving():
    started = time.monotonic()
    stopped = run_in_own_group(*COMMON, "--trainer.max_epochs", "200", *ctrl_c_at(5, times=2),
                               env={"LITSUITE_RUNS_DIR": "ctrl-c"})
    output = stopped.stdout + stopped.stderr
    assert stopped.returncode not in (0, EXIT_INTERRUPTED), output[-3000:]
    assert "stopped on" not in output and "Detected KeyboardInterrupt" in output
    assert not list(Path("ctrl-c").glob("*/checkpoints/*.ckpt"))  # step 5 is before the first epoch end
    assert time.monotonic() - started < 300  # far less than 200 epochs


@pytest.mark.slow
def test_ctrl_c_reaching_every_ddp_rank_stops_them_together_and_the_run_resumes():
    ddp = (*COMMON, "--devices", "2", "--trainer.max_epochs", "3")  # 7 batches per rank and epoch
    stopped = run_in_own_group(*ddp, *ctrl_c_at(10), env={"LITSUITE_RUNS_DIR": "ctrl-c"})
    assert stopped.returncode == EXIT_INTERRUPTED, stopped.stdout[-3000:] + stopped.stderr[-3000:]
    reports = re.findall(r"stopped on Ctrl-C \(SIGINT\) at step (\d+)", stopped.stdout)
    assert len(reports) == 1, stopped.stdout[-3000:]  # rank zero reports, once
    run = only_run(Path("ctrl-c"))
    assert weights(run)["global_step"] == int(reports[0]) >= 10
    resumed = run_in_own_group(*ddp, "--resume", "auto", env={"LITSUITE_RUNS_DIR": "ctrl-c"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert weights(run)["global_step"] == 21


@pytest.mark.slow
def test_ctrl_c_with_data_loader_workers_is_acknowledged_once_and_saves():
    """The workers are in the terminal's process group too; they leave Ctrl-C to the training process."""
    stopped = run_in_own_group(*COMMON, "--trainer.max_epochs", "3", "--data.init_args.num_workers", "2",
                               *ctrl_c_at(17), env={"LITSUITE_RUNS_DIR": "ctrl-c"})
    assert stopped.returncode == EXIT_INTERRUPTED, stopped.stdout[-3000:] + stopped.stderr[-3000:]
    assert stopped.stderr.count("Ctrl-C: saving at the next training step") == 1
    assert weights(only_run(Path("ctrl-c")))["global_step"] == 17
