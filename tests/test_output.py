"""What a run prints: progress in log files, epochs counted from 1, no library noise, pure YAML from --print_config."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import rich
from conftest import only_run, run_script
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.demos.boring_classes import BoringModel

from litsuite import registry
from litsuite.progress import LogProgress, SuiteRichProgressBar, progress_bar_for

RUN = ("--model", "linear_ae", "--data", "synthetic", "--trainer.accelerator", "cpu")


def test_a_log_file_gets_progress_lines_and_no_library_noise():
    """stdout to a pipe, as under SLURM --output or nohup: plain lines while training, not one Rich frame at the end."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") or k == "WANDB_DIR"}
    first = run_script("train.py", *RUN, "--trainer.max_epochs", "2", "--progress_every_s", "0.001", env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    out = first.stdout
    line = re.compile(r"^Epoch 1/2 · batch \d+/\d+ · [\d,]+ samples/s · elapsed \d+:\d\d:\d\d · ETA \d+:\d\d:\d\d"
                      r" · train/loss [\d.e-]+$", re.M)
    assert line.search(out), out
    assert re.search(r"^Epoch 2/2 · batch \d+/\d+ · .* · val/error_ratio [\d.]+", out, re.M), out  # the last val metric
    assert re.search(r"^Epoch 2/2 · validating \d+/\d+", out, re.M) and "training ended after step" in out
    assert "it/s" not in out  # no Rich bar (its speed column) in a file
    assert "Params" in out and "FLOPs" not in out  # the summary stays, its column of zeros goes
    assert "anonymous setting" not in first.stdout + first.stderr  # wandb's warning about Lightning's argument

    resumed = run_script("train.py", *RUN, "--trainer.max_epochs", "3", "--resume", "auto", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "exists and is not empty" not in resumed.stderr  # a resumed run's own checkpoint folder
    assert re.search(r"^Epoch 3/3 · batch 1/", resumed.stdout, re.M)  # the run's saved interval carries over
    assert only_run().name.startswith("linear_ae-synthetic-")


def test_the_rich_bar_counts_epochs_from_one():
    """Lightning's bar shows ``Epoch 1/1`` during the second of two epochs; the suite's ``Epoch 2/2``."""
    screen = io.StringIO()
    bar = SuiteRichProgressBar(console_kwargs={"file": screen, "force_terminal": True, "width": 100})
    shown = []

    class ReadLabel(Callback):  # what the bar's task says at each epoch's end, however fast it was drawn
        def on_train_epoch_end(self, trainer, pl_module) -> None:
            shown.append(bar.train_progress_bar.description.strip())

    try:
        trainer = Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=0, callbacks=[bar, ReadLabel()],
                          logger=False, enable_checkpointing=False, enable_model_summary=False, accelerator="cpu")
        trainer.fit(BoringModel())
    finally:
        rich.reconfigure()  # Lightning's bar points the global console at our screen
    assert shown == ["Epoch 1/2", "Epoch 2/2"]
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert re.findall(r"Epoch \d+/\d+", text)[-1] == "Epoch 2/2"


def test_the_rich_bar_is_kept_on_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for name in ("TERM", "FORCE_COLOR", "TTY_INTERACTIVE", "TTY_COMPATIBLE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert isinstance(progress_bar_for(30, stream=Terminal()), SuiteRichProgressBar)
    logged = progress_bar_for(12.5, stream=io.StringIO())
    assert isinstance(logged, LogProgress) and logged.every_s == 12.5


def test_print_config_is_yaml_that_config_accepts(tmp_path):
    """``train.py --model M --print_config > my.yaml`` then ``--config my.yaml`` (the wandb notice goes to stderr)."""
    printed = run_script("train.py", "--model", "linear_ae", "--logger", "csv", "--print_config")
    assert printed.returncode == 0, printed.stderr[-2000:]
    config = tmp_path / "my.yaml"
    config.write_text(printed.stdout)
    assert registry.load_yaml(config)["model"]["class_path"] == "lit_modules.linear_ae.LinearAE"
    assert not list(Path("runs").glob("*"))  # printing the config leaves no run directory
    again = run_script("train.py", "--model", "linear_ae", "--logger", "none", "--config", str(config),
                       "--trainer.fast_dev_run", "true", "--trainer.accelerator", "cpu")
    assert again.returncode == 0, again.stderr[-2000:]


def test_a_disabled_rich_bar_trains_silently():
    """Lightning disables the bar on every rank but zero; it must then neither draw nor fail."""
    screen = io.StringIO()
    bar = SuiteRichProgressBar(console_kwargs={"file": screen, "force_terminal": True})
    bar.disable()
    try:
        trainer = Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0, callbacks=[bar], logger=False,
                          enable_checkpointing=False, enable_model_summary=False, accelerator="cpu")
        trainer.fit(BoringModel())
    finally:
        rich.reconfigure()
    assert "Epoch" not in screen.getvalue()
