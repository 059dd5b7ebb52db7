"""What each choice of a ``capsule_em`` recipe is worth: one change at a time from the recipe, every run
trained for the same number of images and scored on the same test images.

    python -m evaluation.capsule_em_ablation                      # Fashion-MNIST, the public-size recipe, 6,400 images
    python -m evaluation.capsule_em_ablation --samples 60000 --rows recipe iterations_1 no_coordinate_addition
    python -m evaluation.capsule_em_ablation --slurm -- --partition gpu --gpus-per-node 1 --time 02:00:00
    python -m evaluation.capsule_em_ablation --collect runs/capsule_em-sweep-<job id>   # the report, once done

Every row is an ordinary ``train.py`` run (evaluation/sweep.py): the recipe file with the row's
change laid over it, ``trainer.max_steps`` = samples / batch (so the learning-rate cosine and the
spread-loss margin ramp run their whole course within the budget) and no validation pass. The
report (``<out>/report.md``) gives each row's test accuracy with its 95 % interval, its difference
from the recipe's row, the parameters and the training time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from evaluation.classification import predict_scores, test_arrays
from evaluation.frozen_runs import load_run
from evaluation.report import Report
from evaluation.stats import percent_with_ci
from evaluation.sweep import add_arguments, merged, split_submit_args, study_runs, train_seconds
from litsuite import registry

RECIPE = Path(__file__).resolve().parent.parent / "configs" / "capsule_em_public.yaml"

# name: (what the row changes, model settings laid over the recipe)
ROWS: dict[str, tuple[str, dict]] = {
    "recipe": ("the recipe itself", {}),
    "iterations_1": ("1 EM iteration", {"iterations": 1}),
    "iterations_3": ("3 EM iterations", {"iterations": 3}),
    "lambda_4": ("inverse-temperature scale 4 (the class default)", {"lambda_scale": 4.0}),
    "variance_floor_1e-6": ("variance floor 1e-6", {"variance_floor": 1e-6}),
    "no_coordinate_addition": ("no coordinate addition", {"coordinate_addition": False}),
    "fixed_margin": ("spread-loss margin fixed at 0.9 (no ramp)", {"margin_start": 0.9}),
    "narrow": ("A = 32, C = D = 8 (the CPU recipes' width)", {"conv_channels": 32, "caps1_types": 8,
                                                               "caps2_types": 8}),
}


def row_configs(recipe: dict, rows: list[str], samples: int) -> dict[str, dict]:
    """Each row's full config: the recipe, the row's model change, and a budget of ``samples`` images."""
    batch = int(recipe.get("data", {}).get("init_args", {}).get("batch_size", 32))
    steps = max(1, samples // batch)
    budget = {"trainer": {"max_steps": steps, "max_epochs": -1, "limit_val_batches": 0, "val_check_interval": None,
                          "log_every_n_steps": max(1, steps // 50)}}
    return {row: merged(merged(recipe, {"model": {"init_args": ROWS[row][1]}}), budget) for row in rows}


def score(run: Path, max_test: int | None) -> dict:
    """A row's test accuracy on the first ``max_test`` test images (a fixed random subset), its size and time."""
    model, datamodule, config = load_run(run)
    images, labels = test_arrays(datamodule, max_test)
    with torch.no_grad():
        correct = int((predict_scores(model, images).argmax(dim=1) == labels).sum())
    return {"accuracy": correct / len(labels), "tested": len(labels), "seconds": train_seconds(run),
            "parameters": sum(p.numel() for p in model.parameters()), "steps": config["trainer"]["max_steps"],
            "batch": config["data"]["init_args"]["batch_size"]}


def write_report(out: Path, runs: list[Path], max_test: int | None, data: str) -> Path:
    results = {}
    for run in runs:
        results[run.name] = score(run, max_test)
        print(f"{run.name}: test accuracy {results[run.name]['accuracy']:.4f}", flush=True)
    reference = results.get("recipe", {}).get("accuracy")
    rows = []
    for name, r in results.items():
        change = ROWS[name][0] if name in ROWS else name
        delta = "–" if reference is None or name == "recipe" else f"{100 * (r['accuracy'] - reference):+.1f}"
        seconds = "–" if r["seconds"] is None else f"{r['seconds'] / 60:.1f}"
        rows.append([change, percent_with_ci(r["accuracy"], r["tested"]), delta, f"{r['parameters']:,}",
                     f"{r['steps'] * r['batch']:,}", seconds])
    report = Report(f"capsule_em ablation on {data}", out)
    report.add_table(
        "One change at a time from the recipe",
        ["row", "test accuracy (95 % interval)", "points against the recipe", "parameters", "images seen",
         "training min"],
        rows,
        note=f"Every row trained for the same number of images with its own cosine learning rate and margin ramp, "
        f"and scored on the same {next(iter(results.values()))['tested']:,} test images. Two rows whose intervals "
        "overlap are not told apart by this budget.",
    )
    md, _ = report.write()
    return md


def main(argv: list[str]) -> int:
    argv, submit_args = split_submit_args(argv)
    parser = argparse.ArgumentParser(prog="python -m evaluation.capsule_em_ablation",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="fashion_mnist", help="any image data set of the suite")
    parser.add_argument("--recipe", type=Path, default=RECIPE, help="the capsule_em config the rows change")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--samples", type=int, default=6400, help="training images every row sees")
    parser.add_argument("--max-test", type=int, default=2000, help="test images scored (0: all)")
    add_arguments(parser, "reports/capsule_em_ablation")
    ns, extra = parser.parse_known_args(argv)
    if ns.samples < 1:
        parser.error("--samples must be positive")
    if not ns.collect and not ns.recipe.is_file():
        parser.error(f"--recipe {ns.recipe}: no such file")
    configs = lambda: row_configs(registry.load_yaml(ns.recipe), ns.rows, ns.samples)  # noqa: E731
    runs = study_runs(parser, ns, configs, "capsule_em", "capsule-em-ablation", extra, submit_args)
    if isinstance(runs, int):
        return runs
    md = write_report(Path(ns.out), runs, ns.max_test or None, ns.data)
    print(f"report: {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
