"""Studies made of ordinary ``train.py`` runs, one per config file: trained locally one after another, or
submitted as one SLURM job array through ``slurm/submit.py --template sweep``.

A study writes each run's settings to ``<out>/configs/<name>.yaml`` (:func:`write_configs`), then either
trains them into ``<out>/runs/<name>`` (:func:`train_locally`; a run with a ``last.ckpt`` is not trained
again, so an interrupted study continues where it stopped) or submits them (:func:`submit_array`), and
builds its report from the run folders afterwards.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import yaml


def write_configs(out: Path, configs: dict[str, dict]) -> list[Path]:
    """``{name: config}`` written as ``<out>/configs/<name>.yaml``; returns the paths in the same order."""
    folder = out / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, config in configs.items():
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        paths.append(path)
    return paths


def train_locally(out: Path, configs: list[Path], model: str, data: str, extra: list[str]) -> list[Path]:
    """Train every config that has no finished run yet, one after another; return the run directories.

    Each run's wall-clock seconds are written to ``<run>/train_seconds`` for the study's report.
    """
    from litsuite.frontend import main as train

    runs = []
    for config in configs:
        run = out / "runs" / config.stem
        runs.append(run)
        if (run / "checkpoints" / "last.ckpt").is_file():
            print(f"{config.stem}: already trained ({run})", flush=True)
            continue
        os.environ["LITSUITE_RUN_DIR"] = str(run)
        started = time.time()
        try:
            code = train(["--model", model, "--data", data, "--logger", "csv", "--config", str(config),
                          "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *extra])
        finally:
            os.environ.pop("LITSUITE_RUN_DIR", None)
        if code != 0:
            raise RuntimeError(f"training {config.stem} failed (see above)")
        (run / "train_seconds").write_text(f"{time.time() - started:.1f}\n", encoding="utf-8")
    return runs


def train_seconds(run: Path) -> float | None:
    """Wall-clock seconds :func:`train_locally` measured for a run, or None (a run trained elsewhere)."""
    path = run / "train_seconds"
    return float(path.read_text(encoding="utf-8")) if path.is_file() else None


def submit_array(configs: list[Path], model: str, data: str, job_name: str, submit_args: list[str]) -> int:
    """One SLURM array task per config file, through the suite's submit helper."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "slurm"))
    from submit import main as submit

    return submit(["--template", "sweep", "--model", model, "--job-name", job_name,
                   "--configs", *map(str, configs), *submit_args, "--", "--data", data, "--logger", "csv"])


def split_submit_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """``(study options, options after "--" for submit.py)``."""
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def merged(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` laid over it, nested dictionaries merged key by key (neither is changed)."""
    result = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def add_arguments(parser, out: str) -> None:
    """The options every study shares: where it writes, SLURM instead of local training, report only."""
    parser.add_argument("--out", default=out)
    parser.add_argument("--slurm", action="store_true", help="submit the runs as a SLURM job array instead")
    parser.add_argument("--collect", type=Path, help="only write the report, from the runs under this folder")


def study_runs(parser, ns, configs, model: str, job_name: str, extra: list[str], submit_args: list[str]):
    """The study's run folders (collected with ``--collect``, or trained here), or submit.py's exit code (an int)
    with ``--slurm``. ``configs`` is called only when runs are to be made: ``() -> {name: config}``."""
    if ns.collect:
        runs = sorted(p.parent for p in ns.collect.glob("*/config.yaml"))
        if not runs:
            parser.error(f"--collect {ns.collect}: no run folders (with a config.yaml) in it")
        return runs
    paths = write_configs(Path(ns.out), configs())
    if ns.slurm:
        return submit_array(paths, model, ns.data, job_name, submit_args)
    return train_locally(Path(ns.out), paths, model, ns.data, extra)
