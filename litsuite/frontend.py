"""The thin front end of ``train.py``: shortcuts, registry look-up and run directory, then LightningCLI.

Everything up to :func:`litsuite.training.fit` runs without importing torch, so a wrong model or
data set name is answered in well under a second. ``sys.argv`` is never rewritten: under DDP
Lightning starts the other ranks with the same command line, and they must reach the same
decisions (the run directory travels to them in ``LITSUITE_RUN_DIR``).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from litsuite import preflight, registry, runs
from litsuite.loggers import LOGGERS, LoggerSetupError, choose_wandb_mode, logger_config

EXAMPLES = """\
examples:
  python train.py --model linear_ae                                  # default data set, one device
  python train.py --model linear_ae --data fashion_mnist --model.k 32
  python train.py --model linear_ae --devices 2                      # DDP on 2 devices (CPU: gloo)
  python train.py --model linear_ae --config my.yaml --trainer.max_epochs 5 --resume auto
  python train.py --resume runs/<run> --trainer.max_epochs 80         # continue a run, 80 epochs in all
  python train.py --model linear_ae --config configs/debug.yaml --logger none
  python evaluate.py --run last                                      # test split + report

Every other --model.X, --data.X, --trainer.X, --checkpoint.X, --seed_everything,
--ddp_timeout_minutes and --progress_every_s (seconds between progress lines when stdout is not a
terminal) passes through to LightningCLI; `python train.py --model NAME --print_config` shows them
all. A resumed run starts from its own saved config.yaml (its model, data and settings); options
given with --resume apply on top of it. Exit codes: 0 done (or stopped and requeued under SLURM),
1 error, 2 bad command line or configuration, 130 stopped by Ctrl-C and 143 by SIGTERM after saving
checkpoints/last.ckpt (continue with --resume auto).

Checked before anything starts: sizes (--devices, --num_nodes, --trainer.max_epochs,
--data.init_args.batch_size, ...), a writable runs folder, and on CPU no more processes than cores
(--oversubscribe to start more anyway). Under SLURM the job's own sizes are trusted."""


class FrontEndError(ValueError):
    """A problem in the command line, reported as one line."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad command line is answered with its error line alone (no usage block)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="train.py",
        description="Train a litsuite model. Runs land in runs/<model>-<data>-<stamp>/ (config, checkpoints, logs).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--model", help=f"model name, one of: {', '.join(registry.model_names())}")
    parser.add_argument("--data", help=f"data set, one of: {', '.join(registry.data_names())} (default: the model's)")
    parser.add_argument("--devices", help="devices per node (int, 'auto' or a list); under SLURM: tasks per node")
    parser.add_argument("--num_nodes", type=int, help="number of nodes (default 1; under SLURM: the job's nodes)")
    parser.add_argument(
        "--logger", choices=LOGGERS, help="wandb (default; offline without API key), csv or none; resumes keep theirs"
    )
    parser.add_argument(
        "--resume", metavar="auto|PATH", help="auto: newest run of this model; or a run dir / .ckpt (--model optional)"
    )
    parser.add_argument("--config", action="append", default=[], metavar="YAML", help="extra config file (repeatable)")
    parser.add_argument(
        "--oversubscribe",
        action="store_true",
        help="on CPU, start more processes than the machine has cores (refused otherwise: they would thrash)",
    )
    return parser


def slurm_default(name: str) -> str | None:
    """A Trainer size from the SLURM environment, so the job script and the Trainer cannot disagree."""
    if not os.environ.get("SLURM_JOB_ID") or os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return None
    if name == "devices":
        value = os.environ.get("SLURM_NTASKS_PER_NODE")
        return value.split("(")[0] if value else None
    return os.environ.get("SLURM_NNODES")


def resolve_run(model: str, data: str, resume: str | None) -> tuple[Path, Path | None]:
    """The run directory and the checkpoint to resume from (None for a fresh start)."""
    fixed = os.environ.get(runs.RUN_DIR_ENV)
    if resume in (None, "auto"):
        if fixed:
            run_dir = Path(fixed)
        elif resume == "auto" and (found := runs.job_run_dir(model, data) or runs.newest_resumable(model)):
            run_dir = found  # a requeued SLURM job continues its own run, not whichever is newest
        else:
            run_dir = runs.new_run_dir(model, data)  # created here: the name is taken from now on
        ckpt = run_dir / runs.LAST_CKPT
        return run_dir, ckpt if resume == "auto" and ckpt.is_file() else None
    path = Path(resume)
    ckpt = path if path.is_file() else path / runs.LAST_CKPT
    if not ckpt.is_file():
        raise FrontEndError(f"--resume {resume}: no checkpoint at {ckpt}; pass a .ckpt file, a run directory or 'auto'")
    return Path(fixed) if fixed else runs.run_dir_of(path), ckpt


def saved_config(run_dir: Path) -> dict:
    """The resolved config a run saved at its start; an error naming the file when it is missing or unreadable."""
    path = run_dir / runs.CONFIG_NAME
    if not path.is_file():
        raise FrontEndError(f"{run_dir} holds no {runs.CONFIG_NAME}; pass --model (and --data) to resume from it")
    try:
        return registry.load_yaml(path)
    except Exception as err:  # a YAML error names the line
        raise FrontEndError(f"{path} is not readable YAML: {str(err).splitlines()[0]}") from None


def model_of(config: dict) -> str:
    """The registry name of the model a saved config trains."""
    return registry.model_name_of(registry.class_path_of(config, "model") or "?")


def check_same_run(config: dict, run_dir: Path, model: str, data: str | None) -> str:
    """The data set name of a run being resumed; an error when --model or --data disagree with the run."""
    run_model = model_of(config)
    if model != run_model:
        raise FrontEndError(f"--model {model}: {run_dir} is a {run_model} run; leave --model out to resume it")
    run_data = registry.data_name_of(registry.class_path_of(config, "data") or "?")
    if data is not None and data != run_data:
        raise FrontEndError(
            f"--data {data}: {run_dir} trained on {run_data}; a resumed run keeps its data set (start a new run)"
        )
    return run_data


def logger_of(config: dict) -> str:
    """The ``--logger`` choice a saved config was made with: none, csv or wandb."""
    loggers = (config.get("trainer") or {}).get("logger")
    if not loggers:
        return "none"
    entries = loggers if isinstance(loggers, list) else [loggers]
    classes = [e.get("class_path", "") if isinstance(e, dict) else str(e) for e in entries]
    return "wandb" if any(c.endswith("WandbLogger") for c in classes) else "csv"


def override_keys(rest: list[str]) -> list[str]:
    """The dotted keys of pass-through options (``--model.k`` → ``model.k``)."""
    return [m.group(1) for arg in rest if (m := re.match(r"--([\w.]+)", arg))]


def check_pass_through(rest: list[str]) -> None:
    """Reject stray positional words and unknown top-level sections before the heavy imports."""
    sections = ("model", "data", "trainer", "checkpoint", "seed_everything", "ddp_timeout_minutes", "progress_every_s",
                "print_config", "help")
    if rest and not rest[0].startswith("-"):
        raise FrontEndError(f"unexpected argument '{rest[0]}'; options look like --model.k 32")
    for key in override_keys(rest):
        if key.split(".")[0] not in sections:
            raise FrontEndError(
                f"unknown option '--{key}'; "
                "shortcuts: --model --data --devices --num_nodes --logger --resume --config; "
                f"pass-through sections: {', '.join('--' + s + '.*' for s in sections[:4])}"
            )


def cli_arguments(
    ns: argparse.Namespace, model: str, data: str, logger: str, run_dir: Path, rest: list[str], resumed: bool
) -> list[str]:
    """The LightningCLI argument list: registry configs (or a resumed run's own), user configs, shortcuts, overrides."""
    if resumed:
        args = ["--config", str(run_dir / runs.CONFIG_NAME)]
    else:
        args = ["--config", str(registry.BASE_CONFIG), "--config", str(registry.model_config(model))]
        if ns.data:
            args += ["--config", str(registry.data_config(data))]
        if (pairing := registry.pairing_config(model, data)) is not None:
            args += ["--config", str(pairing)]
    for extra in ns.config:
        if not Path(extra).is_file():
            raise FrontEndError(f"--config {extra}: no such file")
        args += ["--config", extra]
    args += ["--trainer.default_root_dir", str(run_dir), "--checkpoint.dirpath", str(run_dir / "checkpoints")]
    args += ["--trainer.logger", logger_config(logger, run_dir)]
    devices = ns.devices or slurm_default("devices")
    num_nodes = ns.num_nodes or slurm_default("num_nodes")
    if devices:
        args += ["--trainer.devices", str(devices)]
    if num_nodes:
        args += ["--trainer.num_nodes", str(num_nodes)]
    return args + rest


def main(argv: list[str]) -> int:
    parser = build_parser()
    ns, rest = parser.parse_known_args(argv)
    try:
        model = ns.model
        if ns.resume not in (None, "auto") and not Path(ns.resume).exists():
            raise FrontEndError(
                f"--resume {ns.resume}: no such file or folder; pass a run directory, a .ckpt file or 'auto'"
            )
        if not model and ns.resume not in (None, "auto"):
            model = model_of(saved_config(runs.run_dir_of(Path(ns.resume))))
        if not model:
            raise FrontEndError(f"--model is required; valid choices: {', '.join(registry.model_names())}")
        registry.model_config(model)
        asked_data = registry.data_config(ns.data).stem if ns.data else None
        data = asked_data or registry.default_data_of(model)
        check_pass_through(rest)
        preflight.check_sizes(ns.devices, ns.num_nodes, rest)
        preflight.check_multi_node(ns.num_nodes)
        fix = f"set {runs.RUNS_DIR_ENV} to a folder you can write"
        if ns.resume in (None, "auto") and not os.environ.get(runs.RUN_DIR_ENV):  # before a run directory is made
            preflight.check_writable(runs.runs_root(), "runs folder", fix)
        run_dir, ckpt = resolve_run(model, data, ns.resume)
        if ckpt is None:  # a new run is made inside the runs folder; a resumed one writes into its own
            preflight.check_writable(run_dir.parent, "runs folder", fix)
        else:
            preflight.check_writable(run_dir, "run directory", "copy the run somewhere writable and resume it there")
        # a resumed run continues with the config it saved, not with whatever the registry holds now
        resumed = ckpt is not None and (run_dir / runs.CONFIG_NAME).is_file()
        logger = ns.logger or "wandb"
        config: dict = {}
        if resumed:
            config = saved_config(run_dir)
            data = check_same_run(config, run_dir, model, asked_data)
            logger = ns.logger or logger_of(config)
        args = cli_arguments(ns, model, data, logger, run_dir, rest, resumed)
    except (registry.ChoiceError, FrontEndError, preflight.PreflightError) as err:
        runs.release_claims()  # no empty run directory left behind by a refused command line
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    try:
        only_prints = any(a.split("=")[0] in ("--print_config", "--help", "-h") for a in rest)
        notice = choose_wandb_mode(run_dir) if logger == "wandb" and not only_prints else None
    except LoggerSetupError as err:
        runs.release_claims()
        print(f"train.py: error: {err}", file=sys.stderr)
        return 1
    if notice and os.environ.get("SLURM_PROCID", "0") == "0":  # under srun every task runs this front end
        print(notice, file=sys.stderr, flush=True)  # stderr: stdout may be --print_config's YAML
    os.environ[runs.RUN_DIR_ENV] = str(run_dir)  # DDP ranks started by Lightning inherit it
    # the class the run's own config builds (a resumed run may predate a change to the registry)
    class_path = registry.class_path_of(config, "model") or registry.model_class_path(model)

    from litsuite.training import fit  # heavy imports start here

    return fit(args, class_path, run_dir, ckpt, oversubscribe=ns.oversubscribe)
