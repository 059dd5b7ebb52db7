"""Does FlatNCE beat InfoNCE at small batches? Train ``simclr`` with each loss at several batch sizes for the
same number of images seen, then compare frozen features by weighted k-NN and linear probe.

    python -m evaluation.batch_study                                   # Fashion-MNIST, CPU-sized (8,192 images per run)
    python -m evaluation.batch_study --samples 500000 --data cifar10 --out reports/batch_study_cifar10
    python -m evaluation.batch_study --slurm -- --partition gpu --gpus-per-node 1 --time 04:00:00
    python -m evaluation.batch_study --collect runs/simclr-sweep-<job id>   # the report, once the array is done

Every (loss, batch size) pair is one ordinary ``train.py`` run whose settings live in a config
file ``<out>/configs/<loss>-b<batch>.yaml``: ``trainer.max_steps`` = samples / batch, the learning
rate scaled by √(batch / 256) from ``--lr`` (SimCLR's rule for LARS at small batches), a cosine
decay over the run without warm-up (short runs), no validation pass (the probes below measure
the features). Locally the runs go one after another into ``<out>/runs/<loss>-b<batch>`` (a
finished run is not trained again); ``--slurm`` submits them as one job array through
``slurm/submit.py --template sweep --configs`` (options after ``--`` go to submit.py). The report
(``<out>/report.md``) holds, per run, the k-NN and linear-probe accuracy of the frozen backbone
on the test split beside raw pixels, and the gradient norm logged in training (``train/grad_norm``).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from matplotlib.figure import Figure

from evaluation.curves import read_metrics_csv
from evaluation.frozen_runs import load_run
from evaluation.probes import dataset_tensors, features_of, probe_accuracies
from evaluation.report import Report
from evaluation.sweep import add_arguments, split_submit_args, study_runs

LOSSES = ("flatnce", "infonce")
BATCHES = (16, 32, 64, 128, 256)


def run_config(loss: str, batch: int, samples: int, lr: float) -> dict:
    """The settings of one run: the same images seen whatever the batch, learning rate ∝ √batch."""
    steps = max(1, samples // batch)
    return {
        "model": {"init_args": {"loss": loss, "lr": round(lr * math.sqrt(batch / 256), 6), "warmup_epochs": 0.0}},
        "data": {"init_args": {"batch_size": batch}},
        "trainer": {"max_steps": steps, "max_epochs": -1, "limit_val_batches": 0,
                    "log_every_n_steps": max(1, steps // 50)},
    }


def study_configs(samples: int, lr: float, losses, batches) -> dict[str, dict]:
    """One run per (loss, batch), named ``<loss>-b<batch>``."""
    return {f"{loss}-b{batch}": run_config(loss, batch, samples, lr) for loss in losses for batch in batches}


def measure(run: Path, probe_train: int) -> dict:
    """A run's settings, its frozen features' probe accuracies on the test split, and its logged curves."""
    model, datamodule, config = load_run(run)
    x_train, y_train = dataset_tensors(datamodule.train_set, probe_train)
    x_test, y_test = dataset_tensors(datamodule.test_set)
    with torch.no_grad():
        accuracies = probe_accuracies(features_of(model, x_train), y_train, features_of(model, x_test), y_test,
                                      model.hparams.num_classes)
    series = read_metrics_csv(run / "metrics.csv")
    batch = int(config["data"]["init_args"]["batch_size"])
    infonce = [v for _, v in series.get("train/infonce", [])]
    return {"loss": model.hparams.loss, "batch": batch, "lr": model.hparams.lr,
            "steps": int(torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
                         ["global_step"]),
            **accuracies, "grad_norm": series.get("train/grad_norm", []),
            "final_infonce": sum(infonce[-5:]) / max(1, len(infonce[-5:])), "test_size": len(y_test)}


def pixel_floor(run: Path, probe_train: int) -> dict[str, float]:
    """k-NN and linear probe on raw pixels, fitted and scored on the same images as the runs' features."""
    _, datamodule, _ = load_run(run)
    x_train, y_train = dataset_tensors(datamodule.train_set, probe_train)
    x_test, y_test = dataset_tensors(datamodule.test_set)
    return probe_accuracies(x_train.flatten(1).float(), y_train, x_test.flatten(1).float(), y_test,
                            int(y_train.max()) + 1)


def accuracy_figure(results: list[dict], floor: dict[str, float]) -> Figure:
    fig = Figure(figsize=(10, 3.8))
    for i, (key, title) in enumerate((("knn", "weighted k-NN (k = 200)"), ("linear", "linear probe"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for loss in LOSSES:
            points = sorted((r["batch"], r[key]) for r in results if r["loss"] == loss)
            if points:
                ax.plot(*zip(*points), "o-", label=loss)
        ax.axhline(floor[key], color="grey", ls="--", lw=1, label="raw pixels")
        ax.set_xscale("log", base=2)
        ax.set(xlabel="batch size (images; 2N views)", ylabel="test accuracy", title=title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def gradient_figure(results: list[dict]) -> Figure:
    fig = Figure(figsize=(10, 3.8))
    for i, loss in enumerate(LOSSES):
        ax = fig.add_subplot(1, 2, i + 1, sharey=fig.axes[0] if i else None)
        for r in sorted((r for r in results if r["loss"] == loss), key=lambda r: r["batch"]):
            if r["grad_norm"]:
                steps, norms = zip(*r["grad_norm"])
                ax.plot([s * r["batch"] for s in steps], norms, label=f"batch {r['batch']}")
        ax.set_yscale("log")
        ax.set(xlabel="images seen", ylabel="‖∇‖ of backbone and head", title=f"{loss}: gradient norm")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_report(out: Path, runs: list[Path], probe_train: int, title: str) -> Path:
    results = []
    for run in runs:
        results.append(measure(run, probe_train))
        r = results[-1]
        print(f"{r['loss']} batch {r['batch']}: k-NN {r['knn']:.3f}, linear {r['linear']:.3f}", flush=True)
    floor = pixel_floor(runs[0], probe_train)
    n = results[0]["test_size"]
    median = lambda values: sorted(values)[len(values) // 2] if values else math.nan
    rows = [["raw pixels", "–", "–", "–", "–", floor["knn"], floor["linear"], "–", "–"]]
    for r in sorted(results, key=lambda r: (r["batch"], r["loss"])):
        norms = [v for _, v in r["grad_norm"]]
        rows.append([r["loss"], r["batch"], r["steps"], r["steps"] * r["batch"], r["lr"], r["knn"], r["linear"],
                     r["final_infonce"], median(norms)])
    report = Report(title, out)
    report.add_table(
        "Frozen features by loss and batch size (test split)",
        ["loss", "batch", "steps", "images seen", "LARS lr", "k-NN acc", "linear-probe acc",
         "InfoNCE (last logged)", "median ‖∇‖"],
        rows,
        note=f"Probes fitted on the first {probe_train:,} training images, scored on {n:,} test images: a 95 % "
        f"interval is about ±{196 * math.sqrt(0.2 / n):.1f} points at 80 % accuracy. InfoNCE (logged for both "
        "losses) grows with the batch (more negatives), so compare it within a batch size only.",
    )
    report.add_figure("accuracy_vs_batch", accuracy_figure(results, floor), "Accuracy against batch size",
                      "Dashed: the same probe on raw pixels.")
    report.add_figure("gradient_norm", gradient_figure(results), "Gradient norm over training",
                      "Norm of the backbone's and projection head's gradient at each logged step.")
    md, _ = report.write()
    return md


def main(argv: list[str]) -> int:
    argv, submit_args = split_submit_args(argv)
    parser = argparse.ArgumentParser(prog="python -m evaluation.batch_study", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="fashion_mnist", help="any image data set of the suite")
    parser.add_argument("--samples", type=int, default=8192, help="images seen by every run")
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    parser.add_argument("--lr", type=float, default=0.3, help="LARS learning rate at batch 256")
    parser.add_argument("--probe-train", type=int, default=5000, help="training images the probes are fitted on")
    add_arguments(parser, "reports/batch_study")
    ns, extra = parser.parse_known_args(argv)
    if ns.samples < max(ns.batches) or min(ns.batches) < 2:
        parser.error("--samples must be at least the largest batch, and batches at least 2")
    configs = lambda: study_configs(ns.samples, ns.lr, ns.losses, ns.batches)  # noqa: E731
    runs = study_runs(parser, ns, configs, "simclr", "simclr-batch-study", extra, submit_args)
    if isinstance(runs, int):
        return runs
    md = write_report(Path(ns.out), runs, ns.probe_train, f"FlatNCE against InfoNCE by batch size ({ns.data})")
    print(f"report: {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
