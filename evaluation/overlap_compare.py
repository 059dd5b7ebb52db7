"""The overlap test of several runs in one Markdown table, on the same pairs, in each mode asked for.

    python -m evaluation.overlap_compare --runs runs/capsule-... runs/cnn_baseline-...
    python -m evaluation.overlap_compare --runs RUN [RUN ...] --pairs 2000 --seed 1 --out reports/overlap.md
    python -m evaluation.overlap_compare --runs RUN [RUN ...] --mode stack max --pairs 10000

Mode ``max`` overlays the two images (pixelwise maximum), ``stack`` puts them one above the other
(Su's test); a run whose model takes only its training size gets "n/a" in mode ``stack``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from evaluation.classification import test_arrays
from evaluation.overlap import CONFIDENT, DEFAULT_PAIRS, MODES, overlap_test, takes_mode
from evaluation.stats import percent_with_ci
from litsuite import registry, runs


def load_run(run_dir: Path, which: str = "best"):
    """Model (weights of the run's ``which`` checkpoint, eval mode) and data module of a run."""
    from litsuite.cli import SuiteCLI

    config = registry.load_yaml(run_dir / runs.CONFIG_NAME)
    class_path = config["model"]["class_path"]
    args = ["--config", str(run_dir / runs.CONFIG_NAME), "--trainer.logger", "false"]
    args += ["--trainer.devices", "1", "--trainer.num_nodes", "1", "--trainer.strategy", "auto"]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    cli = SuiteCLI(args, class_path, save_config=False)
    ckpt = runs.pick_checkpoint(run_dir, which)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    cli.model.load_state_dict(state["state_dict"])
    cli.datamodule.setup("test")
    return cli.model.eval(), cli.datamodule, registry.model_name_of(class_path), ckpt


def compare(run_dirs: list[Path], num_pairs: int, seed: int, which: str, modes: tuple[str, ...] = ("max",)) -> str:
    """The Markdown table of the overlap test of every run in every mode, on the same pairs when the data agree."""
    header = ["run", "model", "data", "parameters", "mode", "top-2 = true pair", "w/ confidence", "top-1 in pair"]
    header += ["single-image acc", "s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    data_names = set()
    for run_dir in run_dirs:
        model, datamodule, name, ckpt = load_run(run_dir, which)
        images, labels = test_arrays(datamodule)
        params = sum(p.numel() for p in model.parameters())
        data = getattr(datamodule, "name", type(datamodule).__name__)
        data_names.add(data)
        for mode in modes:
            started = time.time()
            row = [run_dir.name, name, data, f"{params:,}", mode]
            if not takes_mode(model, images, mode):
                lines.append("| " + " | ".join(row + ["n/a (fixed input size)"] + ["–"] * 4) + " |")
                continue
            result = overlap_test(model, images, labels, num_pairs, seed, mode)
            confident = result["top2_confident"]
            row += [percent_with_ci(result["top2_pair"], num_pairs)]
            row += [percent_with_ci(confident, num_pairs) if confident is not None else "n/a"]
            row += [percent_with_ci(result["top1_in_pair"], num_pairs), f"{100 * result['single_acc']:.2f} %"]
            row += [f"{time.time() - started:.1f}"]
            lines.append("| " + " | ".join(row) + " |")
            print(f"{run_dir.name} ({ckpt.name}, {mode}): top-2 = true pair {result['top2_pair']:.3f}", flush=True)
    note = (
        f"\n{num_pairs} pairs per run and mode (two test images of different classes, seed {seed}; mode max: their "
        "pixelwise max, mode stack: one above the other); success = the two highest class scores are the true pair; "
        f"w/ confidence: and the second exceeds {CONFIDENT} (scores in [0, 1] only); in brackets the 95 % Wilson "
        f"interval. Each run's {which} checkpoint."
    )
    if len(data_names) > 1:
        note += f" The runs use different data sets ({', '.join(sorted(data_names))}): rows are not comparable."
    return "\n".join(["# Overlap test", "", *lines, note, ""])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.overlap_compare", description=__doc__.split("\n")[0], allow_abbrev=False
    )
    parser.add_argument("--runs", nargs="+", required=True, help="run directories (or names under runs/, or 'last')")
    parser.add_argument("--pairs", type=int, default=DEFAULT_PAIRS, help=f"overlays per run (default {DEFAULT_PAIRS})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pairs (default 0)")
    parser.add_argument(
        "--mode", nargs="+", choices=MODES, default=["max"], help="how the two images are combined (default: max)"
    )
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which checkpoint of each run")
    parser.add_argument("--out", default="reports/overlap.md", help="Markdown file to write (default: %(default)s)")
    ns = parser.parse_args(argv)
    if ns.pairs < 1:
        parser.error("--pairs must be at least 1")
    try:
        run_dirs = [runs.resolve_run(spec) for spec in ns.runs]
    except FileNotFoundError as err:
        print(f"evaluation.overlap_compare: error: {err}", file=sys.stderr)
        return 2
    table = compare(run_dirs, ns.pairs, ns.seed, ns.checkpoint, tuple(dict.fromkeys(ns.mode)))
    out = Path(ns.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table, encoding="utf-8")
    print(table)
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
