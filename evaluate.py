"""Evaluate a trained run on its test split and write a report.

    python evaluate.py --run last                                   # newest run
    python evaluate.py --run runs/linear_ae-digits-20260101-120000  # a run directory (or its name)
    python evaluate.py --ckpt runs/<run>/checkpoints/last.ckpt      # a given checkpoint
    python evaluate.py --dimension 100000                           # embedding size for N words (n > 8.33·ln N)

Writes ``reports/<run>/report.md`` and a self-contained ``report.html`` with the PNG figures beside
them, and logs metrics and figures to the run's logger (wandb: the same run id, offline without a key).
"""

import shutil
import sys
from pathlib import Path

from litsuite import preflight, registry, runs
from litsuite.frontend import OneLineParser, logger_of
from litsuite.loggers import LoggerSetupError, choose_wandb_mode


def fail(message: str, code: int = 1) -> int:
    print(f"evaluate.py: error: {message}", file=sys.stderr, flush=True)
    return code


def main(argv: list[str]) -> int:
    parser = OneLineParser(prog="evaluate.py", description=__doc__.split("\n")[0], allow_abbrev=False)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", help="'last', a run name or a run directory")
    which.add_argument("--ckpt", help="a checkpoint file inside a run directory")
    which.add_argument(
        "--dimension",
        type=int,
        metavar="N",
        help="print the minimum word-embedding dimension for a vocabulary of N words and the table of h_n",
    )
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
    if ns.dimension is not None:
        return _dimension(ns.dimension)
    try:
        run_dir = runs.resolve_run(ns.run or ns.ckpt)
        ckpt = Path(ns.ckpt) if ns.ckpt else runs.pick_checkpoint(run_dir, ns.checkpoint)
        preflight.check_writable(Path(ns.out), "--out", "pass --out with a folder you can write")
    except (FileNotFoundError, preflight.PreflightError) as err:
        return fail(str(err), 2)
    config_path = run_dir / runs.CONFIG_NAME
    config = registry.load_yaml(config_path) if config_path.is_file() else None
    kind = ns.logger if ns.logger != "auto" else logger_of(config or {})
    try:
        if kind == "wandb" and (notice := choose_wandb_mode(run_dir)):
            print(notice, file=sys.stderr, flush=True)
    except LoggerSetupError as err:
        return fail(str(err))

    from litsuite.checkpoint_io import checkpoint_problem  # heavy imports start here

    if problem := checkpoint_problem(ckpt, registry.class_path_of(config or {}, "model")):
        return fail(problem, 2)
    if config is None:
        return fail(
            f"{ckpt} is not inside a run directory ({run_dir} has no config.yaml); "
            "pass a checkpoint from runs/<run>/checkpoints/ or --run <run>",
            2,
        )
    return _evaluate(run_dir, ckpt, ns.logger, Path(ns.out))


def _dimension(vocabulary: int) -> int:
    """Print the n > 8.33·ln N rule for ``vocabulary`` words (SPEC §8)."""
    from evaluation.dimension_rule import dimension_rule_lines

    try:
        lines = dimension_rule_lines(vocabulary)
    except ValueError as err:
        return fail(f"--dimension {vocabulary}: {err}", 2)
    print("\n".join(lines))
    return 0


def _evaluate(run_dir: Path, ckpt: Path, logger: str, out_root: Path) -> int:
    """Test and report; any failure is one line, and a report folder this call made is removed again."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from datamodules.base import DataError
    from evaluation.run import evaluate
    from litsuite.checkpoint_io import describe_state_dict_mismatch
    from litsuite.cli import ConfigError

    out_dir = out_root / run_dir.name
    made = not out_dir.exists()

    def undo() -> None:
        if made:
            shutil.rmtree(out_dir, ignore_errors=True)

    try:
        report = evaluate(run_dir, ckpt, logger, out_root)
    except (ConfigError, DataError, MisconfigurationException) as err:
        undo()
        return fail(" ".join(str(err).split()))
    except RuntimeError as err:
        undo()
        if (detail := describe_state_dict_mismatch(str(err))) is None:
            raise
        return fail(f"{ckpt} does not fit the model its run's config.yaml builds ({detail})")
    except BaseException:
        undo()
        raise
    print(f"report: {report} (and {report.with_suffix('.html')})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
