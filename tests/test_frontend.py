"""The front end: clear one-line errors before torch is imported, run directories, resume choice."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAST, ROOT, run_script, train

from litsuite import frontend, runs


def train_script(*args: str) -> subprocess.CompletedProcess:
    return run_script("train.py", *args, timeout=120)


def test_unknown_model_is_one_line_listing_choices_and_fast():
    started = time.monotonic()
    result = train_script("--model", "nope")
    elapsed = time.monotonic() - started
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown model 'nope'" in lines[0] and "linear_ae" in lines[0]
    assert elapsed < 5  # no torch import on this path (about 0.2 s here; the margin is for loaded CI machines)


def test_unknown_data_set_suggests_the_close_name():
    result = train_script("--model", "linear_ae", "--data", "fashon_mnist")
    assert result.returncode == 2
    assert "did you mean 'fashion_mnist'" in result.stderr and "digits" in result.stderr


def test_missing_model_and_unknown_section():
    assert "--model is required" in train_script().stderr
    result = train_script("--model", "linear_ae", "--modle.k", "3")
    assert result.returncode == 2 and "unknown option '--modle.k'" in result.stderr


def test_torch_is_not_imported_before_the_choice_is_checked():
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); from litsuite import frontend;"
        "rc = frontend.main(['--model', 'nope']); assert 'torch' not in sys.modules; sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr


def test_config_key_typo_on_command_line_is_one_line(capsys):
    assert train("--model", "linear_ae", "--logger", "none", "--model.kk", "3", *FAST) != 0
    out = capsys.readouterr()
    error_lines = [ln for ln in (out.out + out.err).splitlines() if "error" in ln.lower()]
    assert len(error_lines) == 1 and "kk" in error_lines[0], out
    assert not os.path.exists("runs") or not any(os.scandir("runs"))  # no half-made run directory


def test_config_key_typo_in_yaml_file_is_one_line(tmp_path, capsys):
    (tmp_path / "my.yaml").write_text("trainer:\n  max_epochz: 3\n")
    assert train("--model", "linear_ae", "--logger", "none", "--config", "my.yaml", *FAST) != 0
    out = capsys.readouterr()
    error_lines = [ln for ln in (out.out + out.err).splitlines() if "error" in ln.lower()]
    assert len(error_lines) == 1 and "max_epochz" in error_lines[0], out


def test_bad_value_for_model_argument_is_clear(capsys):
    assert train("--model", "linear_ae", "--logger", "none", "--model.k", "1000", *FAST) != 0
    out = capsys.readouterr()
    assert "k must lie in 1..64" in out.out + out.err


def test_resume_auto_picks_newest_run_with_a_checkpoint(tmp_path):
    old, new, empty = (
        tmp_path / "runs" / n for n in ("linear_ae-digits-1", "linear_ae-digits-2", "linear_ae-digits-3")
    )
    for i, run in enumerate((old, new, empty)):
        run.mkdir(parents=True)
        (run / "config.yaml").write_text("{}")
        os.utime(run / "config.yaml", (1000 + i, 1000 + i))
        if run is not empty:
            (run / "checkpoints").mkdir()
            (run / "checkpoints" / "last.ckpt").write_text("x")
    run_dir, ckpt = frontend.resolve_run("linear_ae", "digits", "auto")
    assert run_dir == runs.runs_root() / "linear_ae-digits-2" and ckpt == run_dir / "checkpoints" / "last.ckpt"
    with pytest.raises(frontend.FrontEndError, match="no checkpoint"):
        frontend.resolve_run("linear_ae", "digits", str(empty))


def test_resume_auto_without_previous_run_starts_fresh():
    run_dir, ckpt = frontend.resolve_run("linear_ae", "digits", "auto")
    assert ckpt is None and run_dir.name.startswith("linear_ae-digits-")


def test_run_directory_is_fixed_by_slurm_job(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert runs.new_run_dir("capsule", "mnist").name == "capsule-mnist-slurm4242"
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "2(x3)")
    monkeypatch.setenv("SLURM_NNODES", "3")
    assert frontend.slurm_default("devices") == "2" and frontend.slurm_default("num_nodes") == "3"


def test_help_lists_models_and_data_sets():
    result = train_script("--help")
    assert result.returncode == 0
    for word in ("linear_ae", "fashion_mnist", "--devices", "--resume", "python train.py"):
        assert word in result.stdout


def test_model_and_data_pairing_config_applies_after_the_data_set(tmp_path):
    from litsuite import registry

    assert "linear_ae@fashion_mnist" not in registry.model_names()
    ns = frontend.build_parser().parse_args(["--model", "linear_ae", "--data", "fashion_mnist"])
    args = frontend.cli_arguments(ns, "linear_ae", "fashion_mnist", "none", tmp_path, [], resumed=False)
    configs = [args[i + 1] for i, a in enumerate(args) if a == "--config"]
    assert [p.rsplit("/", 1)[-1] for p in configs] == ["base.yaml", "linear_ae.yaml", "fashion_mnist.yaml",
                                                      "linear_ae@fashion_mnist.yaml"]
    # a resumed run starts from its own saved config instead of the registry's files
    args = frontend.cli_arguments(ns, "linear_ae", "fashion_mnist", "none", tmp_path, [], resumed=True)
    assert [args[i + 1] for i, a in enumerate(args) if a == "--config"] == [str(tmp_path / "config.yaml")]


def fake_run(name: str, model_class: str, data_class: str) -> Path:
    run = runs.runs_root() / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_text("x")
    (run / "config.yaml").write_text(
        f"model:\n  class_path: {model_class}\ndata:\n  class_path: {data_class}\n"
        "trainer:\n  logger:\n  - class_path: litsuite.csv_logger.RunCSVLogger\n"
    )
    return run


def test_resume_from_a_run_checks_model_and_data_against_the_run():
    run = fake_run("linear_ae-digits-1", "lit_modules.linear_ae.LinearAE", "datamodules.digits.DigitsDataModule")
    result = train_script("--model", "capsule", "--resume", str(run))
    assert result.returncode == 2 and "is a linear_ae run; leave --model out" in result.stderr
    result = train_script("--resume", str(run), "--data", "mnist")
    assert result.returncode == 2 and "trained on digits; a resumed run keeps its data set" in result.stderr
    (run / "config.yaml").unlink()
    result = train_script("--resume", str(run))
    assert result.returncode == 2 and "holds no config.yaml; pass --model" in result.stderr


def test_saved_logger_choice_is_read_back():
    assert frontend.logger_of({"trainer": {"logger": False}}) == "none"
    csv = {"class_path": "litsuite.csv_logger.RunCSVLogger"}
    assert frontend.logger_of({"trainer": {"logger": [csv]}}) == "csv"
    wandb = {"class_path": "lightning.pytorch.loggers.WandbLogger"}
    assert frontend.logger_of({"trainer": {"logger": [csv, wandb]}}) == "wandb"
