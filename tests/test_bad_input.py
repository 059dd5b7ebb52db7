"""Bad input gets one line naming the fix, a non-zero exit, no traceback, and leaves nothing behind.

Front-end checks run in a new process (they answer before torch is imported, well under a
second); checks that need the built Trainer or a checkpoint run ``train.py`` in this process.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import FAST, ROOT, evaluate, only_run, run_script, train

from litsuite import loggers, preflight

QUICK = ("--data", "synthetic", "--logger", "none", "--data.init_args.num_samples", "256", *FAST)


def error_lines(text: str, prog: str = "train.py") -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith(f"{prog}: error:")]


def assert_one_line(proc: subprocess.CompletedProcess, code: int, *words: str, prog: str = "train.py") -> str:
    """Exit ``code``, exactly one error line on stderr holding ``words``, and no traceback anywhere."""
    assert proc.returncode == code, proc.stdout[-2000:] + proc.stderr[-2000:]
    (line,) = error_lines(proc.stderr, prog)
    for word in words:
        assert word in line, line
    assert "Traceback" not in proc.stdout + proc.stderr
    return line


def no_runs(root: Path = Path("runs")) -> bool:
    return not root.exists() or not any(root.iterdir())


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody may create files in, root included (an immutable folder when running as root)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if preflight.folder_problem(folder) is None:  # root writes anyway: make the folder immutable
        immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
        if not immutable:
            pytest.skip("cannot make a folder read-only for this user")
    yield folder
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


# --------------------------------------------------------------------------- sizes, before torch is imported


@pytest.mark.parametrize(
    "args, words",
    [
        (("--trainer.max_epochs", "-2"), ("--trainer.max_epochs -2", "-1 for no limit")),
        (("--trainer.max_epochs", "0"), ("--trainer.max_epochs 0 trains nothing",)),
        (("--data.init_args.batch_size", "0"), ("--data.init_args.batch_size 0: must be at least 1",)),
        (("--data.init_args.batch_size=-4",), ("--data.init_args.batch_size -4: must be at least 1",)),
        (("--devices", "0"), ("--devices 0: must be at least 1", "'auto'")),
        (("--trainer.devices", "-3"), ("--trainer.devices -3: must be at least 1",)),
        (("--num_nodes", "0"), ("--num_nodes 0: must be at least 1",)),
        (("--num_nodes", "2"), ("--num_nodes 2", "SLURM", "MASTER_ADDR")),
        (("--num_nodes", "two"), ("invalid int value: 'two'", "--help")),
    ],
)
def test_bad_sizes_on_the_command_line_are_one_line_before_torch(args, words):
    started = time.monotonic()
    proc = run_script("train.py", "--model", "linear_ae", *QUICK, *args, timeout=60)
    assert_one_line(proc, 2, *words)
    assert time.monotonic() - started < 5  # answered by the front end, without importing torch
    assert no_runs()


def test_multi_node_is_allowed_where_the_other_machines_can_be_found(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(preflight.PreflightError):
        preflight.check_multi_node(2)
    monkeypatch.setenv("MASTER_ADDR", "node0")
    preflight.check_multi_node(2)
    preflight.check_sizes("auto", 1, ["--devices", "0,1", "--trainer.devices=[0, 1]", "--trainer.max_epochs", "-1"])


def test_bad_sizes_from_a_config_file_are_one_line(tmp_path, capsys):
    (tmp_path / "bad_batch.yaml").write_text("data:\n  init_args:\n    batch_size: 0\n")
    (tmp_path / "bad_epochs.yaml").write_text("trainer:\n  max_epochs: -2\n")
    for config, words in (("bad_batch.yaml", "batch_size 0: must be at least 1"), ("bad_epochs.yaml", "-2")):
        assert train("--model", "linear_ae", *QUICK, "--config", config) == 2
        (line,) = error_lines(capsys.readouterr().err)
        assert words in line
        assert no_runs()


def test_zero_epochs_from_a_config_file_says_nothing_was_trained_and_keeps_no_run(tmp_path, capsys, caplog):
    caplog.set_level("INFO")  # Lightning's info lines, the "done:" one among them, are log records
    (tmp_path / "zero.yaml").write_text("trainer:\n  max_epochs: 0\n")
    assert train("--model", "linear_ae", *QUICK, "--config", "zero.yaml") == 1
    out = capsys.readouterr()
    (line,) = error_lines(out.err)
    assert "nothing was trained" in line and "max_epochs 0" in line
    assert "done:" not in out.out + out.err + caplog.text and "`Trainer.fit` stopped" in caplog.text
    assert no_runs()


def test_a_config_error_exits_with_the_bad_command_line_code(capsys):
    assert train("--model", "linear_ae", *QUICK, "--model.kk", "3") == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert "kk" in line
    assert no_runs()


# --------------------------------------------------------------------------- hardware


def test_more_cpu_processes_than_cores_are_refused_before_any_start(capsys, caplog):
    caplog.set_level("INFO")
    cores = preflight.cpu_cores()
    asked = cores * 500
    assert train("--model", "linear_ae", *QUICK, "--devices", str(asked)) == 2
    out = capsys.readouterr()
    (line,) = error_lines(out.err)
    assert f"this machine has {cores} CPU core" in line and f"--devices {asked} would start {asked} processes" in line
    assert f"--devices {cores} or fewer" in line and "--oversubscribe" in line
    assert "effective batch" not in out.out + out.err + caplog.text and "GPU available" in caplog.text
    assert no_runs()


class FitReached(Exception):
    """Raised by a stand-in for ``Trainer.fit``: the checks let the run start."""


@pytest.fixture
def fit_reached(monkeypatch):
    """Replace ``Trainer.fit`` by one that records the process count and stops."""
    from lightning.pytorch import Trainer

    def fake_fit(self, *args, **kwargs):
        raise FitReached(self.num_devices)

    monkeypatch.setattr(Trainer, "fit", fake_fit)
    monkeypatch.setattr(preflight, "cpu_cores", lambda: 1)


def test_oversubscribe_and_slurm_let_more_processes_than_cores_start(fit_reached, monkeypatch, capsys):
    assert train("--model", "linear_ae", *QUICK, "--devices", "2") == 2
    assert "this machine has 1 CPU core and " in capsys.readouterr().err
    with pytest.raises(FitReached, match="2"):
        train("--model", "linear_ae", *QUICK, "--devices", "2", "--oversubscribe")
    monkeypatch.setattr("litsuite.training.slurm_batch_job", lambda: True)
    with pytest.raises(FitReached, match="2"):
        train("--model", "linear_ae", *QUICK, "--devices", "2")
    assert "--oversubscribe" in run_script("train.py", "--help").stdout


def test_too_many_processes_counts_only_cpu_processes():
    assert preflight.too_many_processes(4, 4, 0, "cpu") is None
    assert "has 2 CPU cores and 1 GPU(s), unused on CPU" in preflight.too_many_processes(3, 2, 1, "cpu")
    assert preflight.too_many_processes(8, 2, 8, "CUDAAccelerator") is None  # Lightning checks GPUs itself


def test_more_gpus_than_exist_are_named_in_one_line(monkeypatch):
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from litsuite.training import describe_misconfiguration

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    lightning_says = MisconfigurationException("You requested gpu: [0, 1, 2]\n But your machine only has: [0]")
    line = describe_misconfiguration(lightning_says)
    assert "this machine has 1 GPU" in line and "--devices 3 asks for more GPUs" in line
    assert "--devices 1 or fewer" in line and "\n" not in line


# --------------------------------------------------------------------------- folders


def fake_run(root: Path = Path("runs")) -> Path:
    run = root / "linear_ae-synthetic-1"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"not yet looked at")
    (run / "config.yaml").write_text(
        "model:\n  class_path: lit_modules.linear_ae.LinearAE\ntrainer:\n  logger: false\n"
    )
    return run


def test_read_only_runs_folder_is_one_line(read_only_folder):
    env = {**os.environ, "LITSUITE_RUNS_DIR": str(read_only_folder / "runs")}
    proc = run_script("train.py", "--model", "linear_ae", *QUICK, env=env, timeout=60)
    assert_one_line(proc, 2, f"runs folder {read_only_folder / 'runs'} cannot be made", "not writable",
                    "LITSUITE_RUNS_DIR")
    env["LITSUITE_RUNS_DIR"] = str(read_only_folder)
    proc = run_script("train.py", "--model", "linear_ae", *QUICK, env=env, timeout=60)
    assert_one_line(proc, 2, f"runs folder {read_only_folder} is not writable")
    assert not any(read_only_folder.iterdir())


def test_read_only_working_folder_is_one_line_for_train_and_evaluate(read_only_folder):
    """The default folders ./runs and ./reports cannot be made where the user stands."""
    run = fake_run().resolve()
    for args, prog, words in ((("train.py", "--model", "linear_ae", *QUICK), "train.py", "runs folder runs"),
                              (("evaluate.py", "--run", str(run)), "evaluate.py", "--out reports")):
        proc = subprocess.run([sys.executable, str(ROOT / args[0]), *args[1:]], capture_output=True, text=True,
                              cwd=read_only_folder, timeout=60, stdin=subprocess.DEVNULL)
        assert_one_line(proc, 2, words, "cannot be made: the current folder", "is not writable", prog=prog)


def test_evaluate_into_an_unwritable_out_folder_is_one_line(read_only_folder, tmp_path):
    run = fake_run()
    (tmp_path / "a_file").write_text("x")
    for out, words in ((read_only_folder, "is not writable"), (tmp_path / "a_file" / "reports", "is a file")):
        proc = run_script("evaluate.py", "--run", str(run), "--out", str(out), timeout=60)
        assert_one_line(proc, 2, f"--out {out}", words, "pass --out", prog="evaluate.py")


def test_resume_from_a_path_that_does_not_exist_says_so():
    proc = run_script("train.py", "--resume", "/no/such/path", timeout=60)
    assert_one_line(proc, 2, "--resume /no/such/path: no such file or folder")
    proc = run_script("train.py", "--model", "linear_ae", "--resume", "/no/such/path", timeout=60)
    assert_one_line(proc, 2, "--resume /no/such/path: no such file or folder")


# --------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory) -> Path:
    """One short linear_ae run, trained once for this module."""
    root = tmp_path_factory.mktemp("trained") / "runs"
    saved = {k: os.environ.pop(k, None) for k in ("LITSUITE_RUNS_DIR", "LITSUITE_RUN_DIR")}
    os.environ["LITSUITE_RUNS_DIR"] = str(root)
    try:
        assert train("--model", "linear_ae", *QUICK, "--logger", "csv", "--trainer.max_epochs", "1") == 0
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value
    return only_run(root)


@pytest.fixture
def trained_run(trained_once) -> Path:
    """A copy of the trained run in this test's runs folder (its config names the old place; the front end
    overrides those paths with the run's own, as for any run that was moved)."""
    run = Path("runs") / trained_once.name
    shutil.copytree(trained_once, run)
    return run


def foreign_checkpoint(run: Path) -> Path:
    """This run's checkpoint relabelled as another model's, as LightningCLI records the class."""
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    state["hyper_parameters"]["_class_path"] = "lit_modules.capsule.CapsNet"
    path = run / "checkpoints" / "capsule-copy.ckpt"
    torch.save(state, path)
    return path


def test_resuming_or_evaluating_another_models_checkpoint_is_one_line_and_rewrites_nothing(trained_run, capsys):
    config = trained_run / "config.yaml"
    before, stamp = config.read_bytes(), config.stat().st_mtime_ns
    foreign = foreign_checkpoint(trained_run)
    capsys.readouterr()
    assert train("--resume", str(foreign), "--trainer.max_epochs", "2") == 1
    (line,) = error_lines(capsys.readouterr().err)
    assert f"{foreign} holds a capsule model" in line and "not the linear_ae" in line and "last.ckpt" in line
    assert config.read_bytes() == before and config.stat().st_mtime_ns == stamp
    assert evaluate("--ckpt", str(foreign), "--logger", "none") == 2
    (line,) = error_lines(capsys.readouterr().err, "evaluate.py")
    assert "holds a capsule model" in line
    assert not Path("reports").exists()


def test_weights_that_do_not_fit_are_one_line_and_the_runs_config_is_restored(trained_run, capsys):
    config = trained_run / "config.yaml"
    before = config.read_bytes()
    capsys.readouterr()
    # other sizes than the run was made with: the checkpoint's weights cannot load
    assert train("--resume", str(trained_run), "--model.sweep", "[2]", "--trainer.max_epochs", "2") == 1
    out = capsys.readouterr()
    (line,) = error_lines(out.err)
    assert "does not fit the model as configured" in line and "missing weights" in line
    assert config.read_bytes() == before  # LightningCLI rewrote it at the start of fit; it is put back


def test_resuming_a_finished_run_says_nothing_more_was_trained(trained_run, caplog):
    caplog.set_level("INFO")
    assert train("--resume", str(trained_run), "--trainer.max_epochs", "1") == 0
    assert "nothing more to train" in caplog.text and "done: checkpoints" not in caplog.text


@pytest.mark.parametrize(
    "content, words",
    [
        (b"", "is empty (0 bytes)"),
        (b"hello, not a checkpoint\n", "is not a checkpoint (not the zip archive torch.save writes)"),
        (None, "is truncated or corrupt"),
    ],
)
def test_damaged_checkpoints_are_described_in_plain_words(tmp_path, content, words):
    from litsuite.checkpoint_io import checkpoint_problem

    torch.save({"state_dict": {"w": torch.ones(1000)}, "epoch": 0}, tmp_path / "last.ckpt")
    good = (tmp_path / "last.ckpt").read_bytes()
    assert checkpoint_problem(tmp_path / "last.ckpt") is None
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(good[: len(good) // 3] if content is None else content)
    problem = checkpoint_problem(bad)
    assert problem.startswith(f"{bad} is not a readable checkpoint: it {words}")
    assert "last.ckpt" in problem  # the others to choose from
    for jargon in ("mmap", "miniz", "PytorchStreamReader", "_use_new_zipfile_serialization"):
        assert jargon not in problem


# --------------------------------------------------------------------------- failures leave no run folder


@pytest.mark.parametrize("error", [RuntimeError("an error nobody foresaw"), KeyboardInterrupt()])
def test_a_failure_before_the_first_checkpoint_leaves_no_run_folder(error, monkeypatch):
    from lightning.pytorch import Trainer

    def fails_after_writing(self, *args, **kwargs):
        Path(self.default_root_dir).mkdir(parents=True, exist_ok=True)
        Path(self.default_root_dir, "config.yaml").write_text("half a run")
        raise error

    monkeypatch.setattr(Trainer, "fit", fails_after_writing)
    with pytest.raises(type(error)):
        train("--model", "linear_ae", *QUICK)
    assert no_runs()


# --------------------------------------------------------------------------- wandb


def test_wandb_online_without_a_key_is_one_line():
    env = {**os.environ, "WANDB_MODE": "online"}
    env.pop("WANDB_API_KEY", None)
    proc = run_script("train.py", "--model", "linear_ae", "--data", "synthetic", env=env, timeout=60)
    assert_one_line(proc, 1, "no wandb API key", "wandb login", "leave WANDB_MODE unset to log offline")
    assert no_runs()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


def test_wandb_with_a_key_but_no_server_goes_offline_at_once_or_fails_when_online_was_demanded(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    notice = loggers.choose_wandb_mode(Path("runs/r"))
    assert os.environ["WANDB_MODE"] == "offline"
    assert "not reachable" in notice and "logging offline" in notice and "wandb sync runs/r/wandb" in notice
    monkeypatch.setenv("WANDB_MODE", "online")
    with pytest.raises(loggers.LoggerSetupError, match="WANDB_MODE=online but the wandb server .* is not reachable"):
        loggers.choose_wandb_mode(Path("runs/r"))


def test_an_unanswered_connection_gives_up_within_the_timeout(monkeypatch):
    def never_answers(*args, **kwargs):
        time.sleep(3)
        raise TimeoutError("too late")

    monkeypatch.setattr(socket, "create_connection", never_answers)
    started = time.monotonic()
    assert loggers.unreachable("wandb.example", 443, timeout=0.5) == "no answer within 0.5 s"
    assert time.monotonic() - started < 2


def test_the_wandb_notice_goes_to_stderr(capsys, monkeypatch):
    monkeypatch.setattr("litsuite.training.fit", lambda *args, **kwargs: 0)
    assert train("--model", "linear_ae", "--data", "synthetic") == 0
    out = capsys.readouterr()
    assert "wandb: no API key configured" in out.err and "wandb" not in out.out


# --------------------------------------------------------------------------- slurm/submit.py


@pytest.mark.parametrize("args, words", [(("--model", "nope"), "unknown model 'nope'"),
                                         (("--model", "linear_ae", "--", "--data", "fashon_mnist"),
                                          "did you mean 'fashion_mnist'")])
def test_submit_checks_names_against_the_registry_before_writing(tmp_path, args, words):
    out_dir = tmp_path / "generated"
    proc = subprocess.run([sys.executable, str(ROOT / "slurm" / "submit.py"), "--dry-run", "--out-dir", str(out_dir),
                           *args], capture_output=True, text=True, timeout=60)
    assert_one_line(proc, 2, words, prog="submit.py")
    assert not out_dir.exists()


def test_submit_still_writes_a_script_for_known_names(tmp_path):
    out_dir = tmp_path / "generated"
    proc = subprocess.run([sys.executable, str(ROOT / "slurm" / "submit.py"), "--dry-run", "--out-dir", str(out_dir),
                           "--model", "linear_ae", "--", "--data=mnist"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(list(out_dir.glob("*.sbatch"))) == 1
    shutil.rmtree(out_dir)

