"""The report every run gets: intervals, run facts, training clock, declared figures, models without a test pass."""

from __future__ import annotations

import math
import runpy
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from datamodules.synthetic import SyntheticDataModule
from evaluation import run_facts
from evaluation.classification import misclassified
from evaluation.context import EvalContext
from evaluation.figures import FiguresError, add_figures_section, load_figures
from evaluation.report import Report, metrics_table
from evaluation.stats import wilson_interval
from litsuite import registry
from litsuite.run_clock import RunClock, clock_state


def wilson_by_hand(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval written out from its equation."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@pytest.mark.parametrize("k,n", [(0, 10), (10, 10), (353, 359), (180, 359), (9975, 10000)])
def test_wilson_interval_matches_its_equation(k, n):
    assert wilson_interval(k, n) == pytest.approx(wilson_by_hand(k, n), abs=1e-9)


def test_a_359_image_test_split_gives_an_interval_of_about_two_points():
    low, high = wilson_interval(353, 359)  # 98.3 %, as capsule on digits
    assert low < 353 / 359 < high and 0.02 < high - low < 0.04 and high < 1


def test_metrics_table_puts_an_interval_beside_every_accuracy_and_nothing_beside_a_loss():
    table = metrics_table({"test/acc": 0.9, "test/loss": 0.31, "test/top2_acc": 0.5}, test_size=100)
    rows = {row[0]: row for row in table.rows}
    low, high = wilson_interval(90, 100)
    assert rows["test/acc"][2:] == [f"{low:.4f}–{high:.4f}", 100]
    assert rows["test/top2_acc"][2].startswith("0.40") and rows["test/loss"][2:] == ["", ""]
    assert metrics_table({"test/loss": 0.3}, test_size=100).header == ["metric", "value"]


def test_misclassified_lists_only_errors_most_confident_first():
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.99, 0.01]])
    labels = torch.tensor([0, 0, 1, 1])  # sample 1 wrong by 0.6, sample 2 by 0.2, sample 3 by 0.98
    assert misclassified(scores, labels).tolist() == [3, 1, 2]
    assert misclassified(scores, labels, limit=1).tolist() == [3]


class Tiny(LightningModule):
    """A model without a test step: maps images to a unit-norm-ish code."""

    def __init__(self, input_shape: tuple[int, ...] = (1, 8, 8), dim: int = 3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Linear(math.prod(input_shape), dim)

    def forward(self, x):
        return self.net(x.flatten(1))

    def training_step(self, batch, batch_idx):
        loss = (self(batch[0]).pow(2).sum(dim=1) - 1).pow(2).mean()
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(model, max_epochs: int, root: Path, ckpt: Path | None = None) -> Path:
    """Train with the RunClock and a last.ckpt, as a run does; returns the last checkpoint."""
    trainer = Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[RunClock(), ModelCheckpoint(dirpath=root / "checkpoints", save_last=True)],
        default_root_dir=root,
    )
    trainer.fit(model, datamodule=SyntheticDataModule(num_samples=64), ckpt_path=ckpt)
    return root / "checkpoints" / "last.ckpt"


def test_run_clock_adds_up_the_sessions_of_a_resumed_run_and_loads_safely(tmp_path):
    first = fit(Tiny(), 1, tmp_path)
    one = torch.load(first, weights_only=True)  # plain values only: the safe loader must accept it
    (session,) = clock_state(one)["sessions"]
    assert session["seconds"] > 0 and session["hardware"]["devices_per_node"] == 1 and session["hardware"]["cpu"]
    resumed = fit(Tiny(), 3, tmp_path, ckpt=first)
    state = torch.load(resumed, weights_only=True)
    clock = clock_state(state)
    assert len(clock["sessions"]) == 2 and clock["sessions"][0] == session
    assert clock["train_seconds"] == pytest.approx(sum(s["seconds"] for s in clock["sessions"]))
    assert run_facts.training_time(state).endswith(")") and "in 2 sessions" in run_facts.training_time(state)
    assert run_facts.training_progress(state).startswith("3 epochs: 6 training batches")
    assert run_facts.resumed_at(state) == [2]  # the second session took over after epoch 1's two batches
    del state["callbacks"]  # a checkpoint from before the clock
    assert run_facts.training_time(state) == run_facts.NOT_RECORDED == run_facts.training_hardware(state)


def test_training_progress_says_how_far_into_an_epoch_a_preempted_checkpoint_got():
    loops = {
        "epoch_progress": {"total": {"started": 3, "processed": 2}},
        "epoch_loop.batch_progress": {"total": {"completed": 25}, "current": {"completed": 5}},
    }
    text = run_facts.training_progress({"global_step": 25, "loops": {"fit_loop": loops}})
    assert text == ("2 epochs and 5 batches of the next (a checkpoint from inside an epoch): 25 training batches, "
                    "25 optimiser steps")


def test_a_checkpoint_from_the_validation_after_an_epochs_last_batch_counts_that_epoch():
    """A best checkpoint written at the last of several validations per epoch: Lightning has not yet counted
    the epoch as processed, but all its batches (as many as each earlier epoch's) are done."""
    loops = {
        "epoch_progress": {"total": {"started": 4, "processed": 3}},
        "epoch_loop.batch_progress": {"total": {"completed": 3440}, "current": {"completed": 860}},
    }
    text = run_facts.training_progress({"global_step": 4128, "loops": {"fit_loop": loops}})
    assert text.startswith("4 epochs (written at the last validation") and "3,440 training batches" in text


def test_hyperparameters_come_from_config_and_the_models_linked_arguments():
    config = {
        "seed_everything": 7,
        "model": {"class_path": "x.M", "init_args": {"lr": 0.1}},
        "data": {"class_path": "x.D", "init_args": {"batch_size": 32}},
        "trainer": {"max_epochs": 5, "precision": None, "enable_progress_bar": False},
        "checkpoint": {"monitor": "val/acc", "mode": "max"},
    }
    rows = run_facts.hyperparameter_rows(config, {"lr": 0.1, "num_classes": 10})
    assert ["run", "seed_everything", "7"] in rows and ["model", "num_classes", "10"] in rows
    assert ["trainer", "max_epochs", "5"] in rows and ["checkpoint", "monitor", "val/acc"] in rows
    assert not any(row[1] in ("precision", "enable_progress_bar") for row in rows)


def test_every_registered_model_declares_its_figures():
    declared = load_figures()
    missing = [name for name in registry.model_names() if name not in declared]
    assert not missing, f"add entries for {missing} to evaluation/figures.yaml (model: data set: [figures], or {{}})"


def test_malformed_figures_are_refused_with_the_entry_named(tmp_path):
    bad = tmp_path / "figures.yaml"
    bad.write_text("capsule:\n  mnist:\n    - metric: test/acc\n      published: {value: 0.99}\n")
    with pytest.raises(FiguresError, match="capsule / mnist: test/acc 'published' needs value, source"):
        load_figures(bad)


def test_figures_table_shows_the_runs_value_only_beside_its_own_data_set(tmp_path):
    table = {
        "m": {
            "mnist": [{"metric": "test/acc", "published": {"value": 0.9975, "source": "paper"}}],
            "digits": [{"metric": "test/acc", "measured": {"value": 0.98, "command": "train.py", "time": "1 min"}}],
        }
    }
    ctx = EvalContext("m", None, None, None, {"test/acc": 0.95}, tmp_path, tmp_path, test_size=200, data_name="digits")
    report = Report("r", tmp_path)
    add_figures_section(report, ctx, table)
    rows = report.sections[0].rows
    assert rows[0][:2] == ["digits", "test/acc"] and rows[0][4].startswith("95.00 % (")  # own data first, with CI
    assert rows[1][0] == "mnist" and rows[1][2] == "99.75 % (paper)" and rows[1][4] == "(another data set)"
    ctx.model_name = "unknown"
    add_figures_section(report, ctx, table)
    assert "No published or measured figures are declared for 'unknown'" in report.notes[0]


def test_a_model_without_test_step_gets_a_report_with_facts_settings_and_no_test_metrics(tmp_path, monkeypatch):
    from evaluation.run import evaluate

    run_dir = tmp_path / "runs" / "tiny-synthetic-1"
    last = fit(Tiny(dim=2), 2, run_dir)
    (run_dir / "config.yaml").write_text(
        textwrap.dedent(
            """
            seed_everything: 3
            trainer: {max_epochs: 2, accelerator: cpu, enable_progress_bar: false}
            model: {class_path: test_report.Tiny, init_args: {dim: 2}}
            data: {class_path: datamodules.synthetic.SyntheticDataModule, init_args: {num_samples: 64}}
            """
        )
    )
    md = evaluate(run_dir, last, "none", tmp_path / "reports").read_text()
    assert "No test pass: Tiny defines no test_step" in md and "## Test metrics" not in md
    assert "- **trained**: 2 epochs: 4 training batches, 4 optimiser steps" in md
    assert "- **training time**: " in md and run_facts.NOT_RECORDED not in md
    assert "- **seed**: 3" in md
    assert f"[{run_dir / 'config.yaml'}](../../runs/tiny-synthetic-1/config.yaml)" in md  # relative: the page links
    assert "| model | dim | 2 |" in md and "| model | input_shape | [1, 8, 8] |" in md
    assert "No published or measured figures are declared for 'Tiny'" in md


def test_overlap_comparison_has_its_own_entry_point(monkeypatch, capsys):
    """``python -m evaluation.overlap_compare`` runs the comparison (run here in-process: a new one imports torch)."""
    monkeypatch.setattr(sys, "argv", ["overlap_compare", "--runs", "no-such-run"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_module("evaluation.overlap_compare", run_name="__main__")
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("evaluation.overlap_compare: error: no run 'no-such-run'")
    assert len(err.strip().splitlines()) == 1


def test_curves_drop_steps_a_resumed_session_trained_again_and_pair_train_with_val():
    from evaluation.curves import curve_panels, superseded_dropped

    # killed at step 12 after its last checkpoint at step 7: the resumed session repeats 8..12
    points = [(5, 1.0), (10, 0.8), (12, 0.7), (8, 0.9), (10, 0.85), (15, 0.6)]
    assert superseded_dropped(points) == [(5, 1.0), (8, 0.9), (10, 0.85), (15, 0.6)]
    keys = ["train/margin_loss", "train/loss", "val/acc", "val/loss", "val/error_ratio_k8", "train/acc"]
    assert curve_panels(keys) == {
        "loss": ["train/loss", "val/loss"],
        "acc": ["train/acc", "val/acc"],  # same order (and colours) in every panel
        "margin_loss": ["train/margin_loss"],
    }


def test_samples_seen_axis_multiplies_the_step_by_the_effective_batch():
    from evaluation.curves import samples_per_step, training_curves

    config = {"data": {"init_args": {"batch_size": 32}}, "trainer": {"devices": 2, "num_nodes": 3,
                                                                     "accumulate_grad_batches": 4}}
    assert samples_per_step(config) == 32 * 2 * 3 * 4
    assert samples_per_step({"data": {"init_args": {"batch_size": 32}}, "trainer": {"devices": "auto"}}) is None
    assert samples_per_step({"data": {"init_args": {}}, "trainer": {}}) is None
    fig = training_curves({"val/acc": [(10, 0.5), (20, 0.7)]}, step_samples=32)
    (top,) = fig.axes[0].child_axes
    assert top.get_xlabel() == "samples seen"
    assert [round(float(v)) for v in top._functions[0](np.array([10.0, 20.0]))] == [320, 640]


def test_capsule_report_shows_errors_reconstructions_and_overlays_and_feeds_the_figures_table(tmp_path, monkeypatch):
    from evaluation.models import capsule
    from lit_modules.capsule import CapsNet

    monkeypatch.setenv("LITSUITE_OVERLAP_PAIRS", "40")
    dm = SyntheticDataModule(num_samples=64)
    small = {"conv_channels": 8, "conv_kernel": 3, "primary_types": 2, "primary_kernel": 3, "primary_stride": 1}
    model = CapsNet(input_shape=dm.input_shape, num_classes=dm.num_classes, class_dim=4, **small)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    metrics = trainer.test(model, datamodule=dm, verbose=False)[0]
    ctx = EvalContext("capsule", model, dm, trainer, metrics, tmp_path, tmp_path, test_size=len(dm.test_set))
    report = Report("capsule", tmp_path / "report")
    capsule.extend_report(report, ctx)  # an untrained network: it gets test images wrong
    names = {fig.path.name for fig in report.figures}
    assert {"misclassified.png", "reconstructions.png", "overlap_examples.png"} <= names
    assert ctx.result_sizes["overlap/top2_acc"] == 40 and 0 <= ctx.results["overlap/top2_acc"] <= 1
    ctx.data_name = "mnist"
    add_figures_section(report, ctx)
    overlap_row = next(row for row in report.sections[0].rows if row[1] == "overlap/top2_acc")
    assert overlap_row[2].startswith("95.00 %") and overlap_row[4].endswith(")")  # run's value with its interval
