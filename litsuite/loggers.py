"""Logger choice for ``--logger wandb|csv|none``, expressed as LightningCLI config.

wandb goes online only when an API key is configured and its server answers within a few seconds;
otherwise it is switched to offline mode before anything imports wandb, so a run never prompts for
a login or stalls on the network. ``WANDB_MODE=online`` set by hand is a demand: when it cannot be
met (no key, server out of reach) the run fails in one line instead of logging somewhere else.
"""

from __future__ import annotations

import json
import netrc
import os
import socket
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

LOGGERS = ("wandb", "csv", "none")
WANDB_ID_ENV = "LITSUITE_WANDB_ID"  # set by the SLURM templates so a requeued job continues its run
WANDB_PROJECT_ENV = "LITSUITE_WANDB_PROJECT"
DEFAULT_WANDB_URL = "https://api.wandb.ai"
# wandb.init retries for about 90 s before it gives up on an unreachable server; a reachable one
# accepts a TCP connection well within this.
REACH_TIMEOUT_S = 4.0


class LoggerSetupError(RuntimeError):
    """A logger that was asked for explicitly and cannot work; the message names the fix."""


def wandb_key_configured() -> bool:
    """True when wandb would find an API key (environment or ``~/.netrc`` after ``wandb login``)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        hosts = netrc.netrc().hosts
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return any("wandb" in host for host in hosts)


def wandb_server() -> tuple[str, int]:
    """Host and port of the wandb server runs would log to (``WANDB_BASE_URL``, else wandb's own)."""
    url = urlsplit(os.environ.get("WANDB_BASE_URL") or DEFAULT_WANDB_URL)
    return url.hostname or "api.wandb.ai", url.port or (80 if url.scheme == "http" else 443)


def unreachable(host: str, port: int, timeout: float = REACH_TIMEOUT_S) -> str | None:
    """Why ``host:port`` does not accept a TCP connection within ``timeout`` seconds; None when it does.

    Name resolution is not bounded by a socket timeout (a resolver may retry for longer), so the
    whole attempt runs in a daemon thread that is abandoned when the time is up.
    """
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as err:
            outcome.append(err.strerror or str(err) or type(err).__name__)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout)
    return outcome[0] if outcome else f"no answer within {timeout:g} s"


_reached: set[tuple[str, int]] = set()


def _is_rank_zero() -> bool:
    """Only global rank zero logs to wandb; the other ranks need no key and no network."""
    return all(os.environ.get(name, "0") == "0" for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"))


def choose_wandb_mode(run_dir: Path) -> str | None:
    """Decide online or offline before wandb is imported; return a one-line notice for stderr, or None.

    Offline (with a notice) when no API key is configured or the server does not answer within
    :data:`REACH_TIMEOUT_S`, unless ``WANDB_MODE=online`` was set by hand: then
    :class:`LoggerSetupError`. Any other ``WANDB_MODE`` is left as it is.
    """
    os.environ.setdefault("WANDB_SILENT", "true")
    mode = os.environ.get("WANDB_MODE")
    if mode not in (None, "", "online") or not _is_rank_zero():
        return None
    upload = f"upload later with: wandb sync {run_dir / 'wandb'}/offline-run-*"
    if not wandb_key_configured():
        if mode == "online":
            raise LoggerSetupError(
                "WANDB_MODE=online but no wandb API key is configured; run `wandb login` "
                "(or set WANDB_API_KEY), or leave WANDB_MODE unset to log offline"
            )
        os.environ["WANDB_MODE"] = "offline"
        return f"wandb: no API key configured, logging offline; {upload}"
    host, port = wandb_server()
    why = None if (host, port) in _reached else unreachable(host, port)
    if why is None:
        _reached.add((host, port))  # evaluate.py asks twice; the second answer costs no second probe
        return None
    if mode == "online":
        raise LoggerSetupError(
            f"WANDB_MODE=online but the wandb server {host}:{port} is not reachable ({why}); "
            "leave WANDB_MODE unset to log offline when it cannot be reached, or set WANDB_MODE=offline"
        )
    os.environ["WANDB_MODE"] = "offline"
    return f"wandb: {host}:{port} not reachable ({why}), logging offline; {upload}"


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
                      f"what it wrote so far stays in {logger.save_dir}", file=sys.stderr, flush=True)
    if teardown and used:
        import wandb

        try:
            wandb.teardown()
        except Exception:  # noqa: BLE001 - the run's files are already closed; nothing left to lose
            pass
