"""End to end through train.py / evaluate.py: every model runs, resumes exactly, and reports."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from conftest import FAST, evaluate, only_run, run_script, smoke_data, train

from litsuite import registry


@pytest.mark.parametrize("model", registry.model_names())
def test_fast_dev_run_every_model(model):
    data = smoke_data(model)
    assert train("--model", model, *data, "--logger", "none", "--trainer.fast_dev_run", "true", *FAST) == 0


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


def test_resumed_run_ends_with_the_same_weights(monkeypatch):
    common = ("--model", "linear_ae", "--data", "synthetic", "--logger", "csv", *FAST)
    monkeypatch.setenv("LITSUITE_RUNS_DIR", "straight")
    assert train(*common, "--trainer.max_epochs", "4") == 0
    straight = only_run(Path("straight"))

    monkeypatch.setenv("LITSUITE_RUNS_DIR", "interrupted")
    assert train(*common, "--trainer.max_epochs", "2") == 0
    monkeypatch.delenv("LITSUITE_RUN_DIR", raising=False)
    # the second session is a new process, as for a user: the checkpoint must load with torch's safe loader
    resumed_session = run_script("train.py", *common, "--trainer.max_epochs", "4", "--resume", "auto")
    assert resumed_session.returncode == 0, resumed_session.stderr[-3000:]
    resumed = only_run(Path("interrupted"))

    a, b = weights(straight / "checkpoints" / "last.ckpt"), weights(resumed / "checkpoints" / "last.ckpt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    assert steps == torch.load(straight / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    # the resumed session appended to the metrics of the first instead of deleting them
    epochs = {line.split(",")[0] for line in (resumed / "metrics.csv").read_text().splitlines()[1:]}
    assert {"0", "3"} <= epochs


def test_run_directory_holds_config_checkpoints_and_logs():
    assert (
        train("--model", "linear_ae", "--data", "synthetic", "--logger", "csv", "--trainer.max_epochs", "2", *FAST) == 0
    )
    run = only_run()
    assert run.name.startswith("linear_ae-synthetic-")
    config = registry.load_yaml(run / "config.yaml")
    assert config["model"]["class_path"] == "lit_modules.linear_ae.LinearAE" and config["trainer"]["max_epochs"] == 2
    assert (run / "checkpoints" / "last.ckpt").is_file() and list((run / "checkpoints").glob("best-*.ckpt"))
    assert "val/error_ratio" in (run / "metrics.csv").read_text().splitlines()[0]


def test_evaluate_writes_a_report_with_figures():
    assert (
        train("--model", "linear_ae", "--data", "synthetic", "--logger", "csv", "--trainer.max_epochs", "3", *FAST) == 0
    )
    assert evaluate("--run", "last") == 0
    report_dir = Path("reports") / only_run().name
    md, page = (report_dir / "report.md").read_text(), (report_dir / "report.html").read_text()
    assert "test/error_ratio" in md and "Autoencoder versus truncated SVD" in md
    assert (report_dir / "ae_vs_svd.png").stat().st_size > 1000
    assert (report_dir / "training_curves.png").stat().st_size > 1000
    assert page.count("data:image/png;base64,") == 2  # self-contained: images inline


def test_wandb_goes_offline_without_a_key_and_keeps_metrics_and_report_images():
    """As a user runs it: two processes, no API key, no WANDB_MODE; nothing may prompt or hang."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") or k == "WANDB_DIR"}
    train_run = run_script(
        "train.py", "--model", "linear_ae", "--data", "synthetic", "--trainer.max_epochs", "2", *FAST, env=env
    )
    assert train_run.returncode == 0, train_run.stderr[-2000:]
    assert (train_run.stdout + train_run.stderr).count("wandb sync") == 1  # said once, with the upload command
    eval_run = run_script("evaluate.py", "--run", "last", env=env)
    assert eval_run.returncode == 0, eval_run.stderr[-2000:]
    wandb_dir = only_run() / "wandb"
    offline = sorted(wandb_dir.glob("offline-run-*"))
    assert offline, list(wandb_dir.iterdir())
    images = list(wandb_dir.glob("offline-run-*/files/media/images/**/*.png"))
    assert any("ae_vs_svd" in p.name for p in images), images
    records = b"".join(p.read_bytes() for p in wandb_dir.glob("offline-run-*/*.wandb"))  # the offline run logs
    assert b"val/error_ratio" in records and b"test/error_ratio" in records


def test_resume_by_run_directory_continues_with_the_runs_own_config(monkeypatch):
    """``--resume runs/<run>`` alone finds the model, data and settings in the run's config.yaml."""
    monkeypatch.setenv("LITSUITE_RUNS_DIR", "runs")
    first = ("--model", "linear_ae", "--data", "synthetic", "--logger", "csv", "--model.k", "3", "--model.sweep", "[2]")
    assert train(*first, *FAST, "--trainer.max_epochs", "1") == 0
    run = only_run(Path("runs"))
    steps_one_epoch = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    monkeypatch.delenv("LITSUITE_RUN_DIR", raising=False)
    # registry defaults would give k=16 and the digits data: a checkpoint of k=3 would not load into that
    assert train("--resume", str(run), "--trainer.max_epochs", "2") == 0
    assert only_run(Path("runs")) == run
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["global_step"] == 2 * steps_one_epoch
    assert state["hyper_parameters"]["k"] == 3 and "autoencoders.2.encoder" in state["state_dict"]
    assert (run / "metrics.csv").is_file() and not (run / "wandb").exists()  # kept its csv logger


@pytest.mark.parametrize("model", ["linear_ae", "capsule"])
def test_a_models_ddp_options_reach_the_ddp_strategy(model):
    """linear_ae's buffers (the SVD baseline) are constant: DDP must not re-broadcast them every step."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    from litsuite import registry
    from litsuite.cli import SuiteCLI

    switch = "forward_sync_buffers"  # torch >= 2.14; broadcast_buffers before
    switch = switch if switch in inspect.signature(DistributedDataParallel).parameters else "broadcast_buffers"
    expected = {switch: False} if model == "linear_ae" else {}

    config = registry.model_config(model)
    args = ["--config", str(registry.BASE_CONFIG), "--config", str(config), "--trainer.devices", "2",
            "--trainer.accelerator", "cpu", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]
    cli = SuiteCLI(args, registry.model_class_path(model), save_config=False)
    assert cli.trainer.strategy._ddp_kwargs == expected
    # a strategy configured with its own value keeps it
    own = json.dumps({"class_path": "lightning.pytorch.strategies.DDPStrategy", "init_args": {switch: True}})
    cli = SuiteCLI([*args, "--trainer.strategy", own], registry.model_class_path(model), save_config=False)
    assert cli.trainer.strategy._ddp_kwargs.get(switch, True) is True


def test_last_checkpoint_is_the_latest_epoch_even_when_the_metric_did_not_improve(monkeypatch):
    """Lightning >= 2.6 refreshes last.ckpt only together with a top-k save; resume needs the latest."""
    monkeypatch.setenv("LITSUITE_RUNS_DIR", "runs")
    # the error ratio falls every epoch: judged by "max", only epoch 0 is ever the best
    args = ("--model", "linear_ae", "--data", "synthetic", "--logger", "csv", "--checkpoint.mode", "max", *FAST)
    assert train(*args, "--trainer.max_epochs", "3") == 0
    checkpoints = only_run(Path("runs")) / "checkpoints"
    (best,) = checkpoints.glob("best-*.ckpt")
    assert best.name.startswith("best-epoch=0-")
    last = torch.load(checkpoints / "last.ckpt", weights_only=False)
    assert last["epoch"] == 2 and last["global_step"] == 3 * torch.load(best, weights_only=False)["global_step"]


def test_closing_wandb_after_its_service_died_is_one_line_and_happens_once(tmp_path, capsys, monkeypatch):
    """A requeued SLURM job loses wandb's service process: closing the run must not end in a traceback."""
    from types import SimpleNamespace

    from lightning.pytorch.loggers import WandbLogger

    from litsuite.loggers import finish_wandb

    class DeadService:
        calls = 0

        def finish(self):
            DeadService.calls += 1
            raise ConnectionResetError("Connection lost")

    logger = WandbLogger(save_dir=str(tmp_path), offline=True)
    logger._experiment = DeadService()
    finish_wandb(SimpleNamespace(is_global_zero=False, loggers=[logger]))
    assert DeadService.calls == 0  # only rank zero owns the run
    finish_wandb(SimpleNamespace(is_global_zero=True, loggers=[logger]))
    out = capsys.readouterr().err.strip().splitlines()  # a notice: stderr
    assert DeadService.calls == 1 and len(out) == 1
    assert "could not close this session's run (ConnectionResetError: Connection lost)" in out[0]
    # before a requeue the connection to wandb's service is closed as well, and its failure is not fatal
    import wandb

    torn = []
    monkeypatch.setattr(wandb, "teardown", lambda: torn.append(1) or (_ for _ in ()).throw(OSError("gone")))
    finish_wandb(SimpleNamespace(is_global_zero=True, loggers=[logger]), teardown=True)
    assert torn == [1]


def test_resuming_with_another_linear_ae_optimizer_is_refused_in_one_line(monkeypatch, capsys):
    """Adam's state does not fit Gauss–Newton's: say which --model.optimizer the run needs, not a traceback."""
    monkeypatch.setenv("LITSUITE_RUNS_DIR", "runs")
    first = ("--model", "linear_ae", "--data", "synthetic", "--logger", "csv", "--model.optimizer", "adam",
             "--model.lr", "0.01", *FAST)
    assert train(*first, "--trainer.max_epochs", "1") == 0
    run = only_run(Path("runs"))
    monkeypatch.delenv("LITSUITE_RUN_DIR", raising=False)
    capsys.readouterr()
    assert train("--resume", str(run), "--model.optimizer", "gauss_newton", "--trainer.max_epochs", "2") != 0
    out = capsys.readouterr()
    (line,) = [ln for ln in out.err.splitlines() if ln.startswith("train.py: error:")]
    assert "trained with --model.optimizer adam" in line and "resume it with --model.optimizer adam" in line
    assert "Traceback" not in out.out + out.err
    assert "optimizer: adam" in (run / "config.yaml").read_text()  # the refused resume left the run's config
    assert train("--resume", str(run), "--trainer.max_epochs", "2") == 0  # its own optimiser continues
