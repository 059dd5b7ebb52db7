"""Evaluate a trained run on its test split and write a report.

    python evaluate.py --run last                                   # newest run
    python evaluate.py --run runs/linear_ae-digits-20260101-120000  # a run directory (or its name)
    python evaluate.py --ckpt runs/<run>/checkpoints/last.ckpt      # a given checkpoint

Writes ``reports/<run>/report.md`` and a self-contained ``report.html`` with the PNG figures beside
them, and logs metrics and figures to the run's logger (wandb: the same run id, offline without a key).
"""

import argparse
import sys
from pathlib import Path

from litsuite import runs


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="evaluate.py", description=__doc__.split("\n")[0], allow_abbrev=False)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", help="'last', a run name or a run directory")
    which.add_argument("--ckpt", help="a checkpoint file inside a run directory")
    parser.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="with --run: the best checkpoint by the monitored metric, or last.ckpt (default best)",
    )
    parser.add_argument(
        "--logger",
        choices=("auto", "wandb", "csv", "none"),
        default="auto",
        help="auto: wandb if the run used it; csv/none: no tracking (the report is written anyway)",
    )
    parser.add_argument("--out", default="reports", help="folder for reports/<run>/ (default: reports)")
    ns = parser.parse_args(argv)
    try:
        run_dir = runs.resolve_run(ns.run or ns.ckpt)
        ckpt = Path(ns.ckpt) if ns.ckpt else runs.pick_checkpoint(run_dir, ns.checkpoint)
    except FileNotFoundError as err:
        print(f"evaluate.py: error: {err}", file=sys.stderr)
        return 2

    from litsuite.checkpoint_io import checkpoint_problem  # heavy imports start here

    if problem := checkpoint_problem(ckpt):
        print(f"evaluate.py: error: {problem}", file=sys.stderr)
        return 2
    if not (run_dir / runs.CONFIG_NAME).is_file():
        print(
            f"evaluate.py: error: {ckpt} is not inside a run directory ({run_dir} has no config.yaml); "
            "pass a checkpoint from runs/<run>/checkpoints/ or --run <run>",
            file=sys.stderr,
        )
        return 2

    from evaluation.run import evaluate

    report = evaluate(run_dir, ckpt, ns.logger, Path(ns.out))
    print(f"report: {report} (and {report.with_suffix('.html')})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
