"""Logger choice for ``--logger wandb|csv|none``, expressed as LightningCLI config.

wandb goes online only when an API key is configured; otherwise it is switched to offline mode
before anything imports wandb, so a run never prompts for a login or waits on the network.
"""

from __future__ import annotations

import json
import netrc
import os
from pathlib import Path

LOGGERS = ("wandb", "csv", "none")
WANDB_ID_ENV = "LITSUITE_WANDB_ID"  # set by the SLURM templates so a requeued job continues its run
WANDB_PROJECT_ENV = "LITSUITE_WANDB_PROJECT"


def wandb_key_configured() -> bool:
    """True when wandb would find an API key (environment or ``~/.netrc`` after ``wandb login``)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        hosts = netrc.netrc().hosts
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return any("wandb" in host for host in hosts)


def choose_wandb_mode(run_dir: Path) -> str | None:
    """Set ``WANDB_MODE=offline`` when no key is configured; return a one-line notice, or None."""
    os.environ.setdefault("WANDB_SILENT", "true")
    if os.environ.get("WANDB_MODE") or wandb_key_configured():
        return None
    os.environ["WANDB_MODE"] = "offline"
    return (
        "wandb: no API key configured, logging offline; upload later with: "
        f"wandb sync {run_dir / 'wandb'}/offline-run-*"
    )


def wandb_id(run_dir: Path) -> str:
    """A stable wandb run id for a run directory (or the one the environment fixes)."""
    return os.environ.get(WANDB_ID_ENV) or run_dir.name.replace(".", "_")[-64:]


def logger_config(kind: str, run_dir: Path) -> str:
    """The ``--trainer.logger`` value (JSON) for a logger name.

    A CSV logger writing ``<run>/metrics.csv`` comes first in every case but ``none``: the
    report draws its training curves from it, and it makes ``trainer.log_dir`` the run directory.
    """
    if kind == "none":
        return "false"
    csv = {
        "class_path": "litsuite.csv_logger.RunCSVLogger",
        "init_args": {"save_dir": str(run_dir), "name": "", "version": ""},
    }
    loggers = [csv]
    if kind == "wandb":
        loggers.append(
            {
                "class_path": "lightning.pytorch.loggers.WandbLogger",
                "init_args": {
                    "save_dir": str(run_dir),
                    "project": os.environ.get(WANDB_PROJECT_ENV, "litsuite"),
                    "name": run_dir.name,
                    "id": wandb_id(run_dir),
                },
                "dict_kwargs": {"resume": "allow"},
            }
        )
    return json.dumps(loggers)


def finish_wandb(trainer, teardown: bool = False) -> None:
    """Close the wandb run of ``trainer`` (rank zero) so its files are complete on disk; offline
    runs are synced from them. A second call does nothing. If wandb's service process is already
    gone (SLURM stops every process of a job it requeues), one line says so instead of a traceback.

    ``teardown``: also close this process's connection to wandb's service, for a process about to
    be stopped from outside (otherwise wandb's exit hook finds the service gone and prints a traceback).
    """
    from lightning.pytorch.loggers import WandbLogger  # here: this module is read before torch is imported

    if not trainer.is_global_zero:
        return
    used = False
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            used = True
            try:
                logger.experiment.finish()
            except Exception as err:  # noqa: BLE001 - wandb raises several kinds when its service has died
                print(f"wandb: could not close this session's run ({type(err).__name__}: {err}); "
                      f"what it wrote so far stays in {logger.save_dir}", flush=True)
    if teardown and used:
        import wandb

        try:
            wandb.teardown()
        except Exception:  # noqa: BLE001 - the run's files are already closed; nothing left to lose
            pass
