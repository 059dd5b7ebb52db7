"""SLURM: the sbatch templates, slurm/submit.py, and real jobs on a SLURM cluster.

The template test is fast and needs no cluster. The job tests are ``slow`` and need a running
cluster; on one machine::

    bash slurm/local_cluster_up.sh && pytest -m slow tests/test_slurm.py; bash slurm/local_cluster_down.sh

Without ``sbatch``/``sinfo`` or a usable node the job tests skip, except under ``CI=true``, where
that is a failure. The jobs: train and evaluate; a task killed mid-training ends its job; SIGUSR1
requeues a job, which resumes mid-epoch and ends like an uninterrupted one. Jobs are 2 CPU tasks
(gloo) on one node, run from the repo root, and write into the test's tmp_path (a shared file
system is needed: the tmp_path must be visible to the node, which it is when the cluster is this
machine).
"""

from __future__ import annotations

import functools
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUBMIT = REPO / "slurm" / "submit.py"
TEMPLATES = ("single_node", "multi_node", "sweep")
# A job is still going while its state is one of these (a requeued job passes through several).
ACTIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
                 "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT"}
USABLE_NODE_STATES = {"idle", "mixed", "allocated", "completing"}
POLL_S = 0.5
JOB_TIME_LIMIT = "00:10:00"
TRAIN_ARGS = ["--data", "synthetic", "--logger", "csv"]
# The preemption runs are long enough (~20 x 0.35 s here) that the signal lands mid-training,
# with several optimizer steps per epoch so it lands mid-epoch.
PREEMPT_ARGS = TRAIN_ARGS + ["--trainer.max_epochs", "20", "--data.init_args.num_samples", "2048",
                              "--data.init_args.batch_size", "128"]


# --------------------------------------------------------------------------- helpers


def run_submit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run slurm/submit.py with ``args`` and return the finished process."""
    return subprocess.run([sys.executable, str(SUBMIT), *args], capture_output=True, text=True, timeout=60,
                          env=env, cwd=REPO)


def written_script(proc: subprocess.CompletedProcess) -> Path:
    """The path submit.py reports as written."""
    match = re.search(r"^wrote (\S+)$", proc.stdout, re.MULTILINE)
    assert match, f"submit.py did not report a script:\n{proc.stdout}\n{proc.stderr}"
    path = Path(match.group(1))
    return path if path.is_absolute() else REPO / path


def job_env(run_dir: Path | None = None) -> dict[str, str]:
    """Our environment minus any enclosing job's SLURM_* variables, plus LITSUITE_RUN_DIR if given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    if run_dir is not None:
        env["LITSUITE_RUN_DIR"] = str(run_dir)
    return env


def submit_cpu_job(tmp_path: Path, name: str, run_dir: Path, train_args: list[str]) -> tuple[str, Path]:
    """Submit a 2-task CPU single_node job running train.py; return (job id, log file)."""
    log = tmp_path / f"{name}.out"
    setup = f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH"
    proc = run_submit("--template", "single_node", "--model", "linear_ae", "--nodes", "1", "--gpus-per-node", "2",
                      "--cpu", "--time", JOB_TIME_LIMIT, "--chdir", str(REPO), "--setup", setup,
                      "--job-name", f"litsuite-test-{name}", "--output", str(log),
                      "--out-dir", str(tmp_path / "generated"), "--", *train_args, env=job_env(run_dir))
    assert proc.returncode == 0, f"submit.py failed:\n{proc.stdout}\n{proc.stderr}"
    match = re.search(r"^submitted job (\d+)", proc.stdout, re.MULTILINE)
    assert match, f"no job id in submit.py output:\n{proc.stdout}"
    return match.group(1), log


def job_info(job_id: str) -> dict[str, str]:
    """``scontrol show job -o`` as a dict; ``{"JobState": "GONE"}`` once the controller forgot the job."""
    proc = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        if "Invalid job id" in proc.stderr:
            return {"JobState": "GONE"}
        raise RuntimeError(f"scontrol show job {job_id} failed: {proc.stderr.strip()}")
    return dict(re.findall(r"(\w[\w/:]*)=(\S*)", proc.stdout))


def log_tail(log: Path, lines: int = 40) -> str:
    text = log.read_text(errors="replace") if log.exists() else "(no log file)"
    return "\n".join(text.splitlines()[-lines:])


def wait_for_job(job_id: str, timeout: float, log: Path, min_restarts: int = 0) -> dict[str, str]:
    """Poll until the job has ended (after at least ``min_restarts`` requeues); cancel it on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        info = job_info(job_id)
        ended = info["JobState"] not in ACTIVE_STATES
        if ended and int(info.get("Restarts", "0")) >= min_restarts:
            return info
        if ended and info["JobState"] != "COMPLETED":  # failed before the expected requeue
            return info
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job_id], timeout=30)
            pytest.fail(f"job {job_id} still {info['JobState']} after {timeout:.0f} s (cancelled); log:\n"
                        f"{log_tail(log)}")
        time.sleep(POLL_S)


def task_pids(job_id: str, rank: int) -> list[int]:
    """PIDs of the ``train.py`` processes that SLURM started as task ``rank`` of ``job_id`` (this node)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"train.py" not in (entry / "cmdline").read_bytes():
                continue
            pairs = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        env = dict(p.decode(errors="replace").split("=", 1) for p in pairs if b"=" in p)
        if env.get("SLURM_JOB_ID") == job_id and env.get("SLURM_PROCID") == str(rank) and "SLURM_STEP_ID" in env:
            found.append(int(entry.name))
    return found


def wait_for_file(path: Path, job_id: str, log: Path, timeout: float = 240) -> None:
    """Poll until ``path`` exists; fail (cancelling the job) if the job ends or the time runs out first."""
    deadline = time.monotonic() + timeout
    while not path.is_file():
        state = job_info(job_id)["JobState"]
        if state not in ACTIVE_STATES or time.monotonic() > deadline:
            subprocess.run(["scancel", job_id], timeout=30)
            pytest.fail(f"job {job_id} is {state} and never wrote {path}; log:\n{log_tail(log)}")
        time.sleep(0.1)


def load_checkpoint(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


@functools.lru_cache(maxsize=1)
def cluster_problem() -> str | None:
    """Why no job can run here (asked once per session: sinfo takes seconds to give up), or None."""
    missing = [cmd for cmd in ("sbatch", "sinfo", "scontrol", "scancel") if shutil.which(cmd) is None]
    if missing:
        return f"SLURM commands not found: {', '.join(missing)}"
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo timed out (is slurmctld running?)"
    if proc.returncode != 0 or not set(proc.stdout.split()) & USABLE_NODE_STATES:
        return f"no usable SLURM node (sinfo: {proc.stdout.strip() or proc.stderr.strip()!r})"
    return None


@pytest.fixture
def slurm_cluster() -> None:
    """Skip unless SLURM commands exist and a node is usable; under CI=true fail instead."""
    problem = cluster_problem()
    if problem and os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {problem}; start one with: bash slurm/local_cluster_up.sh")
    if problem:
        pytest.skip(problem)


# --------------------------------------------------------------------------- fast: templates


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("cpu", [False, True], ids=["gpu", "cpu"])
def test_dry_run_renders_a_complete_sbatch_script(template: str, cpu: bool, tmp_path: Path) -> None:
    """Every template renders without leftover placeholders, with well-formed #SBATCH lines up front."""
    nodes = "2" if template == "multi_node" else "1"
    args = ["--template", template, "--model", "linear_ae", "--nodes", nodes, "--gpus-per-node", "2",
            "--partition", "gpu", "--time", "00:30:00", "--setup", "source .venv/bin/activate",
            "--chdir", str(tmp_path), "--out-dir", str(tmp_path / "generated"), "--dry-run"]
    args += ["--cpu"] if cpu else ["--account", "proj42"]
    args += ["--seeds", "0", "1", "2", "3"] if template == "sweep" else []
    proc = run_submit(*args, "--", "--trainer.max_epochs", "5", "--model.k", "a b")
    assert proc.returncode == 0, proc.stderr
    assert "dry run: not submitted" in proc.stdout
    assert re.search(r"^sbatch --parsable \S+\.sbatch$", proc.stdout, re.MULTILINE), proc.stdout
    script = written_script(proc).read_text()

    assert "{{" not in script, script  # ("}}" is fine: bash writes ${A:-x-${B}})
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    first_command = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    directives = [line for line in lines if line.startswith("#SBATCH")]
    assert all(lines.index(d) < first_command for d in directives), "sbatch ignores #SBATCH after the first command"
    for line in directives:
        assert re.fullmatch(r"#SBATCH --[a-z][a-z-]*(=\S+)?", line), f"malformed directive: {line!r}"
    options = dict(d.removeprefix("#SBATCH --").partition("=")[::2] for d in directives)
    assert len(options) == len(directives), f"repeated option in {directives}"

    assert options["time"] == "00:30:00" and options["requeue"] == "" and options["open-mode"] == "append"
    assert options["signal"] == "SIGUSR1@90"
    assert options["ntasks-per-node"] == "2" and options["nodes"] == nodes and options["partition"] == "gpu"
    assert options["chdir"] == str(tmp_path)
    log_dir = Path(options["output"]).parent
    assert (tmp_path / log_dir).is_dir(), "sbatch does not create the log folder: submit.py must"
    assert ("gres" not in options and "account" not in options) if cpu else options["gres"] == "gpu:2"
    assert "mem" not in options  # not given, so left to the cluster
    if template == "sweep":
        assert options["array"] == "0-3" and "SWEEP_VALUES=(0 1 2 3)" in script
        assert "--seed_everything \"${value}\"" in script
    srun = script[script.index("\nsrun "):]
    assert "python train.py --model linear_ae" in srun and "--resume auto" in srun
    assert "--trainer.max_epochs 5 --model.k 'a b'" in srun
    assert ("--trainer.accelerator cpu" in srun) == cpu
    assert "source .venv/bin/activate" in script
    assert '"${LITSUITE_RUN_DIR:-runs/linear_ae-' in script and "export LITSUITE_RUN_DIR=" in script
    assert "LITSUITE_WANDB_ID=" in script
    if shutil.which("bash"):
        check = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--template", "single_node", "--nodes", "2"], "use --template multi_node"),
        (["--template", "sweep"], "needs --seeds, --configs or --array"),
        (["--template", "single_node", "--seeds", "1"], "need --template sweep"),
        (["--template", "nope"], "no template 'nope'"),
        (["--partition", "a b"], "--partition"),
    ],
)
def test_submit_rejects_bad_options_with_a_hint(args: list[str], message: str, tmp_path: Path) -> None:
    proc = run_submit("--model", "linear_ae", "--out-dir", str(tmp_path), "--dry-run", *args)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    assert not list(tmp_path.iterdir()), "nothing may be written on an error"


# --------------------------------------------------------------------------- slow: real jobs


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_two_cpu_tasks_train_under_slurm_and_evaluate(slurm_cluster: None, tmp_path: Path) -> None:
    """A 2-task gloo job trains linear_ae for 2 epochs; evaluate.py then writes a report."""
    run_dir = tmp_path / f"linear_ae-slurm-test-{uuid.uuid4().hex[:8]}"
    job, log = submit_cpu_job(tmp_path, "train", run_dir, TRAIN_ARGS + ["--trainer.max_epochs", "2"])
    info = wait_for_job(job, timeout=300, log=log)
    text = log.read_text(errors="replace")
    assert info["JobState"] == "COMPLETED", f"job {job} ended {info['JobState']}; log:\n{log_tail(log)}"
    assert "Initializing distributed: GLOBAL_RANK: 0, MEMBER: 1/2" in text, log_tail(log)
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in text, log_tail(log)
    assert "distributed_backend=gloo" in text
    assert "`Trainer.fit` stopped" in text, log_tail(log)
    last = run_dir / "checkpoints" / "last.ckpt"
    assert last.is_file(), f"no {last}; run dir holds {sorted(p.name for p in run_dir.rglob('*'))}"
    assert load_checkpoint(last)["epoch"] == 1

    reports = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "evaluate.py", "--run", str(run_dir), "--out", str(reports)],
                          cwd=REPO, env=job_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"evaluate.py failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    report = reports / run_dir.name / "report.md"
    assert report.is_file() and report.stat().st_size > 0, f"no report at {report}:\n{proc.stdout[-2000:]}"


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"], ids=["dies", "hangs"])
def test_a_task_that_dies_or_hangs_ends_the_job(how: str, slurm_cluster: None, tmp_path: Path) -> None:
    """One of the two tasks dies (SIGKILL) or freezes (SIGSTOP) mid-training: the job must fail within a
    minute, not wait for the time limit. A frozen task never exits by itself: rank 0 gives up after
    the DDP timeout (12 s here) and ``srun --kill-on-bad-exit=1`` then ends the frozen one."""
    run_dir = tmp_path / "victim"
    job, log = submit_cpu_job(tmp_path, f"task-{how.lower()}", run_dir,
                              TRAIN_ARGS + ["--trainer.max_epochs", "100000", "--ddp_timeout_minutes", "0.2"])
    wait_for_file(run_dir / "checkpoints" / "last.ckpt", job, log)
    pids = task_pids(job, rank=1)
    assert len(pids) == 1, f"expected one task 1 of job {job} on this node, found {pids}"
    os.kill(pids[0], getattr(signal, how))
    hit = time.monotonic()
    info = wait_for_job(job, timeout=90, log=log)
    assert info["JobState"] == "FAILED", f"job {job} ended {info['JobState']}; log:\n{log_tail(log)}"
    assert time.monotonic() - hit < 60
    if how == "SIGSTOP":
        assert "a DDP collective timed out" in log.read_text(errors="replace"), log_tail(log)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_preempted_job_requeues_itself_and_ends_like_an_uninterrupted_one(slurm_cluster: None,
                                                                          tmp_path: Path) -> None:
    """SIGUSR1 mid-training (what --signal=SIGUSR1@90 sends near the time limit) must requeue the job,
    which resumes mid-epoch from last.ckpt and ends with the same step and weights as a run never
    interrupted.

    The signal goes to every task of the job (``scancel --signal=USR1``), like the sbatch
    --signal option; ``--batch`` would hit only the batch shell, which then dies without a requeue.
    It lands at a random moment of the second epoch, so repeated runs probe different points.
    """
    preempted_dir, reference_dir = tmp_path / "preempted", tmp_path / "reference"
    job, log = submit_cpu_job(tmp_path, "preempted", preempted_dir, PREEMPT_ARGS)
    ref_job, ref_log = submit_cpu_job(tmp_path, "reference", reference_dir, PREEMPT_ARGS)

    # Preempt once the first epoch-end checkpoint exists: the tasks are training, handlers installed.
    last = preempted_dir / "checkpoints" / "last.ckpt"
    try:
        wait_for_file(last, job, log)
    finally:
        if not last.is_file():
            subprocess.run(["scancel", ref_job], timeout=30)
    time.sleep(random.uniform(0.0, 1.0))
    signalled = subprocess.run(["scancel", "--signal=USR1", job], capture_output=True, text=True, timeout=30)
    assert signalled.returncode == 0, signalled.stderr

    # The handler only sets a flag; the next training batch saves and requeues. A hang shows up here.
    deadline = time.monotonic() + 60
    while int((info := job_info(job)).get("Restarts", "0")) < 1:
        if info["JobState"] not in ACTIVE_STATES or time.monotonic() > deadline:
            subprocess.run(["scancel", job, ref_job], timeout=30)
            pytest.fail(f"job {job} did not requeue itself within 60 s of SIGUSR1 (finished already, or "
                        f"hung); log:\n{log_tail(log)}")
        time.sleep(POLL_S)

    info = wait_for_job(job, timeout=400, log=log, min_restarts=1)
    ref_info = wait_for_job(ref_job, timeout=300, log=ref_log)
    assert ref_info["JobState"] == "COMPLETED", f"reference job ended {ref_info['JobState']}:\n{log_tail(ref_log)}"
    assert info["JobState"] == "COMPLETED", f"preempted job ended {info['JobState']}:\n{log_tail(log)}"
    assert info["Restarts"] == "1", f"requeued {info['Restarts']} times; log:\n{log_tail(log)}"

    text = log.read_text(errors="replace")
    stop = re.search(r"preempted at step (\d+) \(epoch (\d+), batch (\d+)\); saved (\S+); requeueing SLURM job (\d+)",
                     text)
    assert stop, f"no preemption message from rank zero in the log:\n{log_tail(log)}"
    assert stop.group(5) == job and Path(stop.group(4)) == last.resolve()
    assert not list(preempted_dir.rglob("hpc_ckpt_*.ckpt")), "Lightning's in-handler auto-requeue must be off"
    assert re.search(rf"job {job} restart 1 ", text), "the requeued job did not start again (same log, appended)"
    resumed = text[re.search(rf"job {job} restart 1 ", text).start():]
    restored = re.search(r"Restored all states from the checkpoint at (\S+)", resumed)
    assert restored and Path(restored.group(1)).resolve() == last.resolve(), resumed[-3000:]

    ours, ref = load_checkpoint(last), load_checkpoint(reference_dir / "checkpoints" / "last.ckpt")
    hint = f" (preempted at step {stop.group(1)}, epoch {stop.group(2)}, batch {stop.group(3)})"
    assert (ours["global_step"], ours["epoch"]) == (ref["global_step"], ref["epoch"]), hint
    assert ours["state_dict"].keys() == ref["state_dict"].keys()
    for key, value in ref["state_dict"].items():
        diff = (ours["state_dict"][key].double() - value.double()).abs().max().item() if value.numel() else 0.0
        assert diff == 0.0, f"{key} differs from the uninterrupted run by up to {diff:.3g}{hint}"
