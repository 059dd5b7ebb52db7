"""Evaluate one run: test split through the Trainer, then the report, logged to the run's logger."""

from __future__ import annotations

import importlib
import json
import os
import time
from pathlib import Path

import torch
from lightning.pytorch.loggers import WandbLogger

from evaluation.context import EvalContext
from evaluation.curves import read_metrics_csv, training_curves
from evaluation.report import Report
from litsuite import registry, runs
from litsuite.cli import SuiteCLI
from litsuite.loggers import choose_wandb_mode, finish_wandb, wandb_id


def logger_json(kind: str, run_dir: Path) -> str:
    """Evaluation logs to the training run's wandb run (same id), never over its metrics.csv."""
    if kind != "wandb":
        return "false"
    return json.dumps(
        {
            "class_path": "lightning.pytorch.loggers.WandbLogger",
            "init_args": {
                "save_dir": str(run_dir),
                "project": os.environ.get("LITSUITE_WANDB_PROJECT", "litsuite"),
                "name": run_dir.name,
                "id": wandb_id(run_dir),
            },
            "dict_kwargs": {"resume": "allow"},
        }
    )


def training_logger_kind(config: dict) -> str:
    loggers = (config.get("trainer") or {}).get("logger")
    return "wandb" if "WandbLogger" in json.dumps(loggers) else "csv"


def extend_with_model_hook(report: Report, ctx: EvalContext) -> None:
    """Call ``evaluation/models/<model>.py:extend_report`` when the model has one."""
    try:
        hook = importlib.import_module(f"evaluation.models.{ctx.model_name}")
    except ModuleNotFoundError as err:
        if err.name != f"evaluation.models.{ctx.model_name}":
            raise
        return
    hook.extend_report(report, ctx)


def evaluate(run_dir: Path, ckpt: Path, logger: str, out_root: Path) -> Path:
    """Test ``ckpt`` of ``run_dir`` and write ``<out_root>/<run>/report.{md,html}``; return the report path."""
    config = registry.load_yaml(run_dir / runs.CONFIG_NAME)
    class_path = config["model"]["class_path"]
    model_name = registry.model_name_of(class_path)
    kind = training_logger_kind(config) if logger == "auto" else logger
    if kind == "wandb" and (notice := choose_wandb_mode(run_dir)):
        print(notice, flush=True)
    out_dir = out_root / run_dir.name
    args = ["--config", str(run_dir / runs.CONFIG_NAME), "--trainer.logger", logger_json(kind, run_dir)]
    args += ["--trainer.devices", "1", "--trainer.num_nodes", "1", "--trainer.strategy", "auto"]
    args += ["--trainer.default_root_dir", str(out_dir)]
    cli = SuiteCLI(args, class_path, save_config=False)
    started = time.time()
    results = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=str(ckpt), weights_only=False)
    metrics = {k: float(v) for result in results for k, v in result.items()}
    state = torch.load(ckpt, map_location="cpu", weights_only=False)

    report = Report(f"{model_name} — {run_dir.name}", out_dir)
    report.facts = {
        "model": f"{model_name} ({class_path})",
        "data": config["data"]["class_path"].rpartition(".")[2],
        "checkpoint": f"{ckpt} (epoch {state.get('epoch')}, step {state.get('global_step')})",
        "evaluated": time.strftime("%Y-%m-%d %H:%M:%S")
        + f" in {time.time() - started:.1f} s on {cli.trainer.strategy.root_device}",
    }
    report.metrics = metrics
    ctx = EvalContext(model_name, cli.model, cli.datamodule, cli.trainer, metrics, run_dir, ckpt)
    if (run_dir / "metrics.csv").is_file() and (fig := training_curves(read_metrics_csv(run_dir / "metrics.csv"))):
        report.add_figure("training_curves", fig, "Training curves", "From the run's metrics.csv.")
    else:
        report.add_note("No training curves: the run was trained without a CSV log (--logger none).")
    extend_with_model_hook(report, ctx)
    md_path, _ = report.write()
    for trainer_logger in cli.trainer.loggers:
        if isinstance(trainer_logger, WandbLogger):
            for fig in report.figures:
                trainer_logger.log_image(key=f"report/{fig.path.stem}", images=[str(fig.path)])
    finish_wandb(cli.trainer)
    return md_path
