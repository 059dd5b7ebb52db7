"""Guards: a non-finite loss, a crashed data-loader worker, and DDP ranks that die, hang or run on two "nodes".

Fast tests run in this process. The ``slow`` ones start 2-process DDP runs on CPU (gloo) and kill
or freeze one rank; every model is also trained once under 2-process DDP.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
from conftest import FAST, ROOT, only_run, smoke_data, train
from lightning.pytorch import Callback
from torch.utils.data import Dataset, get_worker_info

from datamodules.synthetic import SyntheticDataModule
from litsuite import registry
from litsuite.guards import describe_failure

# 512 samples: 4 batches of 128 per epoch on one process.
COMMON = ("--model", "linear_ae", "--data", "synthetic", "--logger", "csv", "--data.init_args.num_samples", "512",
          "--data.init_args.batch_size", "128", *FAST)
TESTS = str(Path(__file__).resolve().parent)


class PoisonWeights(Callback):
    """Fills the first parameter with NaN before optimiser step ``step`` on rank ``rank`` only."""

    def __init__(self, step: int = 9, rank: int = 0) -> None:
        self.step, self.rank = step, rank

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step and trainer.global_rank == self.rank:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))


def poison_at(step: int, rank: int = 0) -> tuple[str, ...]:
    return ("--trainer.callbacks+=test_guards.PoisonWeights", "--trainer.callbacks.step", str(step),
            "--trainer.callbacks.rank", str(rank))


class _CrashingDataset(Dataset):
    def __init__(self, inner, crash: str) -> None:
        self.inner, self.crash = inner, crash

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i):
        if get_worker_info() is not None:  # only in a worker: the main process stays healthy
            if self.crash == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise ValueError(f"sample {i} has a bad header")
        return self.inner[i]


class CrashingWorkerData(SyntheticDataModule):
    """Synthetic data whose training samples crash a loader worker (``kill``: SIGKILL, ``raise``: an exception)."""

    def __init__(self, crash: str = "raise", **kwargs) -> None:
        super().__init__(**kwargs)
        self.crash = crash

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if not isinstance(self.train_set, _CrashingDataset):
            self.train_set = _CrashingDataset(self.train_set, self.crash)


def run_train(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    # an in-process train() leaves LITSUITE_RUN_DIR set (for DDP ranks); a new run must not inherit it
    inherited = {k: v for k, v in os.environ.items() if k != "LITSUITE_RUN_DIR"}
    full_env = {**inherited, "PYTHONPATH": os.pathsep.join([TESTS, str(ROOT)]), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, stdin=subprocess.DEVNULL)


def error_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if "error" in ln.lower()]


# --------------------------------------------------------------------------- fast


def test_nan_loss_stops_the_run_naming_the_step_and_the_last_good_checkpoint(capsys):
    assert train(*COMMON, "--trainer.max_epochs", "5", *poison_at(9)) == 1
    out = capsys.readouterr()
    lines = error_lines(out.out + out.err)
    run = only_run()
    last = (run / "checkpoints" / "last.ckpt").resolve()
    assert len(lines) == 1, lines
    assert "non-finite training loss (nan) at step 10 (epoch 2, batch 1)" in lines[0]
    assert f"last good checkpoint: {last}" in lines[0] and "--resume" in lines[0]
    saved = torch.load(last, weights_only=False)
    assert saved["global_step"] == 8  # the end of epoch 1; nothing was saved after the NaN
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())


def test_nan_loss_before_any_checkpoint_says_so_and_leaves_no_run_directory(capsys):
    assert train(*COMMON, "--trainer.max_epochs", "2", *poison_at(0)) == 1
    out = capsys.readouterr()
    lines = error_lines(out.out + out.err)
    assert len(lines) == 1 and "at step 1 (epoch 0, batch 0)" in lines[0] and "no checkpoint was saved" in lines[0]
    assert not Path("runs").exists() or not any(Path("runs").iterdir())


@pytest.mark.parametrize("model", registry.model_names())
def test_every_models_registry_run_stops_at_a_nan_loss_with_the_guards_line(model, capsys):
    """The guard comes from base.yaml into every model's run (no model config may drop it), and anomaly
    detection is off: with it on, autograd's own error about the NaN would end the run instead."""
    data = smoke_data(model)
    code = train("--model", model, *data, "--logger", "csv", "--data.init_args.batch_size", "8",
                 "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.num_sanity_val_steps",
                 "0", *FAST, *poison_at(1))
    out = capsys.readouterr()
    lines = error_lines(out.out + out.err)
    assert code == 1 and len(lines) == 1, out.out[-2000:] + out.err[-2000:]
    assert "non-finite training loss (nan) at step 2 (epoch 0, batch 1)" in lines[0]
    # a model that validates within the epoch (wgan_gp's FID) may have saved before the bad step: then it is named
    saved = sorted(Path("runs").glob("*/checkpoints/last.ckpt")) if Path("runs").is_dir() else []
    assert ("no checkpoint was saved" in lines[0]) == (not saved), lines[0]
    assert all(f"last good checkpoint: {ckpt.resolve()}" in lines[0] for ckpt in saved) and "Traceback" not in out.err


@pytest.mark.parametrize(("crash", "expected"), [("kill", "a data-loader worker (pid"), ("raise", "worker 0 failed")])
def test_data_loader_worker_crash_is_one_clear_line(crash, expected, capsys):
    code = train(*COMMON, "--trainer.max_epochs", "1", "--data.class_path", "test_guards.CrashingWorkerData",
                 "--data.init_args.num_workers", "1", "--data.init_args.crash", crash)
    out = capsys.readouterr()
    lines = [ln for ln in (out.out + out.err).splitlines() if ln.startswith("train.py: error:")]
    assert code == 1 and len(lines) == 1 and expected in lines[0], out.out[-2000:] + out.err[-2000:]
    assert "num_workers 0" in lines[0]
    if crash == "raise":
        assert "ValueError: sample" in lines[0] and "bad header" in lines[0]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("[gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 12000ms for recv operation to complete",
         "timed out"),
        ("[Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=9, OpType=ALLREDUCE)", "timed out"),
        ("[gloo/transport/tcp/pair.cc:446] Application timeout caused pair closure", "timed out"),
        ("[gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:4242", "died"),
        ("CUDA out of memory", None),
    ],
)
def test_distributed_failures_are_named(message, expected):
    described = describe_failure(RuntimeError(message))
    assert (described is None) if expected is None else (expected in described)


# --------------------------------------------------------------------------- slow: 2-process DDP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pids_with(marker: str, **wanted: str) -> list[int]:
    """Processes whose start environment holds LITSUITE_TEST_MARK=marker and the ``wanted`` variables."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            pairs = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        env = dict(p.decode(errors="replace").split("=", 1) for p in pairs if b"=" in p)
        if env.get("LITSUITE_TEST_MARK") == marker and all(env.get(k) == v for k, v in wanted.items()):
            found.append(int(entry.name))
    return found


def start_long_ddp_run(*extra: str) -> tuple[subprocess.Popen, str]:
    """A 2-process run that trains for minutes; returns it once its first epoch is saved (rank 1 exists)."""
    marker = uuid.uuid4().hex
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "LITSUITE_TEST_MARK": marker}
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *COMMON, "--devices", "2",
                             "--trainer.max_epochs", "10000", *extra], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not list(Path("runs").glob("*/checkpoints/last.ckpt")):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the DDP run ended or stalled before its first checkpoint:\n{proc.communicate()[0][-3000:]}")
        time.sleep(0.1)
    return proc, marker


@pytest.mark.slow
def test_nan_on_one_rank_stops_every_rank_at_the_same_step():
    started = time.monotonic()
    proc = run_train(*COMMON, "--devices", "2", "--trainer.max_epochs", "5", *poison_at(5, rank=1))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]
    assert output.count("non-finite training loss") == 1, output[-3000:]  # said once, by rank zero
    assert "at step 6 (epoch 2, batch 1)" in output  # 2 batches per rank and epoch
    assert time.monotonic() - started < 120


@pytest.mark.slow
def test_nan_seen_between_two_checks_names_its_own_step_and_nothing_is_saved_after_it():
    """Under DDP the ranks compare flags only every few steps and at epoch ends: the error still
    names the first bad step, and the checkpoint written at the epoch end before it is the last."""
    args = (*COMMON, "--data.init_args.num_samples", "1024", "--devices", "2", "--trainer.max_epochs", "5")
    proc = run_train(*args, *poison_at(5, rank=1))  # 4 batches per rank and epoch: step 6 is epoch 1, batch 1
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]
    assert output.count("non-finite training loss") == 1, output[-3000:]
    assert "at step 6 (epoch 1, batch 1)" in output, output[-3000:]
    saved = torch.load(only_run() / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())


@pytest.mark.slow
def test_a_rank_killed_mid_training_ends_the_run_instead_of_hanging():
    proc, marker = start_long_ddp_run()
    (rank1,) = pids_with(marker, LOCAL_RANK="1")
    os.kill(rank1, signal.SIGKILL)
    killed = time.monotonic()
    try:
        output, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("rank 0 still running 90 s after rank 1 died")
    assert proc.returncode != 0, output[-3000:]
    assert time.monotonic() - killed < 60


@pytest.mark.slow
def test_a_hung_rank_makes_the_others_fail_after_ddp_timeout_minutes():
    proc, marker = start_long_ddp_run("--ddp_timeout_minutes", "0.2")  # 12 s instead of 30 min
    (rank1,) = pids_with(marker, LOCAL_RANK="1")
    os.kill(rank1, signal.SIGSTOP)  # alive but silent, like a rank stuck in a driver call
    stopped = time.monotonic()
    try:
        proc.wait(timeout=120)  # not communicate(): the frozen rank holds the output pipe open
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("rank 0 still waiting 120 s after rank 1 stopped: the DDP timeout is not applied")
    finally:
        os.kill(rank1, signal.SIGKILL)
    waited = time.monotonic() - stopped
    output = proc.communicate(timeout=30)[0]
    assert proc.returncode != 0, output[-3000:]
    assert 10 < waited < 90, f"failed after {waited:.0f} s"
    assert "a DDP collective timed out" in output, output[-3000:]


# Models whose own tests already train a 2-process DDP run end to end (and check more than this smoke run
# does: gathered negatives, sparse gradients, both GAN optimisers); the smoke run skips them to save CI time.
OWN_DDP_RUN = {
    "linear_ae": ("test_ddp.py", "test_two_process_cpu_ddp_training_run"),
    "ocr_cnn": ("test_ddp.py", "test_two_process_cpu_ddp_training_run"),
    "simclr": ("test_simclr.py", "test_two_process_ddp_training_run_gathers_negatives_and_validates"),
    "skipgram": ("test_skipgram.py", "test_two_process_ddp_training_with_sparse_gradients"),
    "wgan_gp": ("test_wgan_gp_slow.py", "test_two_process_ddp_training_and_evaluation"),
}


def test_every_model_is_trained_under_two_process_ddp_by_some_test():
    """The smoke run below covers every registered model without a 2-process run of its own elsewhere."""
    for model, (file, test) in OWN_DDP_RUN.items():
        assert model in registry.model_names(), f"{model} is no longer a registered model"
        source = (ROOT / "tests" / file).read_text(encoding="utf-8")
        body = source.split(f"def {test}(", 1)[1].split("\ndef ", 1)[0]
        assert f'"{model}"' in source and "--devices" in body, f"{file}::{test} trains no DDP run of {model}"
        assert '"--devices", "2"' in body or '"2"' in body, f"{file}::{test} does not use two processes"


@pytest.mark.slow
@pytest.mark.parametrize("model", [m for m in registry.model_names() if m not in OWN_DDP_RUN])
def test_every_model_trains_under_two_process_ddp(model):
    data = smoke_data(model)
    proc = run_train("--model", model, *data, "--devices", "2", "--logger", "csv",
                     "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches",
                     "2", *FAST)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "MEMBER: 2/2" in output and output.count("run directory:") == 1
    assert (only_run() / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_num_nodes_two_processes_as_two_nodes_train_one_run(tmp_path):
    """``--num_nodes`` without SLURM: one process per "node", joined by MASTER_ADDR/MASTER_PORT/NODE_RANK."""
    port, run_dir = str(free_port()), tmp_path / "runs" / "two-nodes"
    base = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port, "LITSUITE_RUN_DIR": str(run_dir)}
    command = [sys.executable, str(ROOT / "train.py"), *COMMON, "--devices", "1", "--num_nodes", "2",
               "--trainer.max_epochs", "2"]
    nodes = [subprocess.Popen(command, env={**base, "NODE_RANK": str(rank)}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL) for rank in (0, 1)]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    assert "MEMBER: 1/2" in outputs[0] and "MEMBER: 2/2" in outputs[1]
    assert "effective batch 256" in outputs[0]
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4
