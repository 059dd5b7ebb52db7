"""Evaluate one run: the test split through the Trainer when the model has one, then the report.

Every report states how the run was made (settings, progress, training time, hardware, seed) and
compares it with the figures declared in ``evaluation/figures.yaml``; the test pass, and with it the
test metrics, runs only when the model defines ``test_step`` and the data module a test split, so
models that are not classifiers (generators, embeddings) get the same report without accuracies.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from pathlib import Path

import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.model_helpers import is_overridden

from evaluation import run_facts
from evaluation.context import EvalContext
from evaluation.curves import read_metrics_csv, samples_per_step, training_curves
from evaluation.figures import add_figures_section
from evaluation.report import Link, Report
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


def missing_test_pass(model, datamodule) -> str | None:
    """Why there is no test pass (the model has no ``test_step``, the data no test split), or None."""
    if not is_overridden("test_step", model):
        return f"{type(model).__name__} defines no test_step"
    if not is_overridden("test_dataloader", datamodule):
        return f"{type(datamodule).__name__} has no test split"
    return None


def count_test_cases(datamodule) -> int | None:
    """Number of test cases (None for a data set without a length, e.g. a stream)."""
    try:
        return len(datamodule.test_dataloader().dataset)
    except (TypeError, AttributeError):
        return None


def load_weights(model, checkpoint: dict) -> None:
    """The checkpoint's weights into ``model`` as Lightning's own restore does it (the model's hook first)."""
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()


def run_facts_of(config: dict, checkpoint: dict, model, run_dir: Path, ckpt: Path, out_dir: Path) -> dict:
    """The facts at the top of the report: what was trained, how long, on what, with which seed."""
    epoch, step = checkpoint.get("epoch"), checkpoint.get("global_step")
    data_seed = (config["data"].get("init_args") or {}).get("seed")
    return {
        "model": f"{registry.model_name_of(config['model']['class_path'])} ({config['model']['class_path']})",
        "data": registry.data_name_of(config["data"]["class_path"]),
        "parameters": run_facts.parameter_count(model),
        "trained": run_facts.training_progress(checkpoint),
        "training time": run_facts.training_time(checkpoint),
        "trained on": run_facts.training_hardware(checkpoint),
        "seed": f"{config.get('seed_everything')} (seed_everything; the data module's split seed: {data_seed})",
        "config": Link(str(run_dir / runs.CONFIG_NAME), os.path.relpath(run_dir / runs.CONFIG_NAME, out_dir)),
        "checkpoint": f"{ckpt} (epoch index {epoch}, step {step})",
    }


def evaluate(run_dir: Path, ckpt: Path, logger: str, out_root: Path) -> Path:
    """Evaluate ``ckpt`` of ``run_dir`` and write ``<out_root>/<run>/report.{md,html}``; return the report path."""
    config = registry.load_yaml(run_dir / runs.CONFIG_NAME)
    class_path = config["model"]["class_path"]
    model_name = registry.model_name_of(class_path)
    kind = training_logger_kind(config) if logger == "auto" else logger
    if kind == "wandb" and (notice := choose_wandb_mode(run_dir)):
        print(notice, flush=True)
    out_dir = out_root / run_dir.name
    args = ["--config", str(run_dir / runs.CONFIG_NAME), "--trainer.logger", logger_json(kind, run_dir)]
    args += ["--trainer.devices", "1", "--trainer.num_nodes", "1", "--trainer.strategy", "auto"]
    args += ["--trainer.default_root_dir", str(out_dir), "--trainer.limit_test_batches", "1.0"]
    cli = SuiteCLI(args, class_path, save_config=False)
    started = time.time()
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    metrics, test_size = {}, None
    if (missing := missing_test_pass(cli.model, cli.datamodule)) is None:
        results = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=str(ckpt), weights_only=False)
        metrics = {k: float(v) for result in results for k, v in result.items()}
        test_size = count_test_cases(cli.datamodule)
    else:
        load_weights(cli.model, checkpoint)

    report = Report(f"{model_name} — {run_dir.name}", out_dir)
    report.facts = run_facts_of(config, checkpoint, cli.model, run_dir, ckpt, out_dir)
    report.metrics, report.test_size = metrics, test_size
    if missing:
        report.add_note(f"No test pass: {missing}; the report shows what the model's own sections measure.")
    data_name = registry.data_name_of(config["data"]["class_path"])
    ctx = EvalContext(model_name, cli.model, cli.datamodule, cli.trainer, metrics, run_dir, ckpt, test_size)
    ctx.data_name = data_name
    resumed = run_facts.resumed_at(checkpoint)
    metrics_csv = run_dir / "metrics.csv"
    step_samples = samples_per_step(config)
    if metrics_csv.is_file() and (
        fig := training_curves(read_metrics_csv(metrics_csv), session_starts=resumed, step_samples=step_samples)
    ):
        caption = "From the run's metrics.csv; training and validation of each quantity in one panel."
        if step_samples:
            caption += f" Top axis: samples seen ({step_samples} per step)."
        if resumed:
            caption += f" Dashed: where a resumed session took over (steps {', '.join(map(str, resumed))})."
        report.add_figure("training_curves", fig, "Training curves", caption)
    else:
        report.add_note("No training curves: the run was trained without a CSV log (--logger none).")
    extend_with_model_hook(report, ctx)
    add_figures_section(report, ctx)  # after the hook: it compares the hook's own results too
    hparams = dict(getattr(cli.model, "hparams", {}) or {})
    report.add_table(
        "How the run was made",
        ["section", "setting", "value"],
        run_facts.hyperparameter_rows(config, hparams),
        note="The resolved settings of the run's last training session (config.yaml, linked above), with the "
        "model arguments linked from the data module.",
    )
    report.facts["evaluated"] = (
        time.strftime("%Y-%m-%d %H:%M:%S") + f" in {time.time() - started:.1f} s on {cli.trainer.strategy.root_device}"
    )
    md_path, _ = report.write()
    for trainer_logger in cli.trainer.loggers:
        if isinstance(trainer_logger, WandbLogger):
            for fig in report.figures:
                trainer_logger.log_image(key=f"report/{fig.path.stem}", images=[str(fig.path)])
    finish_wandb(cli.trainer)
    return md_path
