"""Test isolation: every test runs in its own folder with a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_ENV = (
    "LITSUITE_RUN_DIR",
    "LITSUITE_RUNS_DIR",
    "LITSUITE_WANDB_ID",
    "WANDB_MODE",
    "WANDB_API_KEY",
    "MASTER_ADDR",
    "MASTER_PORT",
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "NODE_RANK",
    "PL_GLOBAL_SEED",
)


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One ``LITSUITE_CACHE`` for the whole session: derived data (the OCR charset, font coverage)
    is built once, never read from or written to the user's own cache."""
    return tmp_path_factory.mktemp("litsuite-cache")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch, session_cache):
    """Run in ``tmp_path`` with no run-directory, wandb key or DDP variables left from elsewhere."""
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LITSUITE_CACHE", str(session_cache))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc: wandb must go offline by itself
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.chdir(tmp_path)
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    rank = getattr(rank_zero_only, "rank", 0)
    yield tmp_path
    rank_zero_only.rank = rank  # a Trainer built under a simulated rank sets this process-wide
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def train(*argv: str) -> int:
    """Run ``train.py`` in this process; returns its exit code."""
    from litsuite.frontend import main

    return main(list(argv))


def evaluate(*argv: str) -> int:
    sys.path.insert(0, str(ROOT))
    import evaluate as evaluate_script

    return evaluate_script.main(list(argv))


def run_script(script: str, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``train.py`` or ``evaluate.py`` as a user would: a new process, no standard input."""
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        capture_output=True,
        text=True,
        env=env if env is not None else dict(os.environ),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def smoke_data(model: str) -> tuple[str, ...]:
    """``--data synthetic`` (tiny images) where the model has a recipe for them; otherwise its own data
    (word models have no images)."""
    from litsuite import registry

    return ("--data", "synthetic") if registry.pairing_config(model, "synthetic") else ()


def only_run(root: Path = Path("runs")) -> Path:
    runs = sorted(p for p in root.iterdir() if p.is_dir())
    assert len(runs) == 1, runs
    return runs[0]


FAST = (
    "--trainer.accelerator",
    "cpu",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
)
