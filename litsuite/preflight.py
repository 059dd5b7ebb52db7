"""Checks that need no torch: writable folders, sizes given on the command line, and the machine's size.

They run before the heavy imports, so a mistyped size or a read-only folder is answered at once
and before anything is written. Values that come from config files are checked where they are
built (:mod:`litsuite.training`), with the same messages where the same rule applies.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path


class PreflightError(ValueError):
    """A setting or a folder that cannot work, described in one line that names the fix."""


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, which taskset, cgroups and SLURM narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def folder_problem(path: Path) -> str | None:
    """Why files cannot be created in folder ``path`` (made first if missing), in a few words; None when they can.

    Probes by creating and removing a hidden file in the folder, or in its nearest existing
    ancestor when the folder does not exist yet: ``os.access`` answers for the real user only and
    says yes to root on folders a read-only mount or an immutable attribute still refuses.
    """
    probe_in = path
    while not probe_in.exists() and probe_in.parent != probe_in:
        probe_in = probe_in.parent
    name = f"the current folder ({Path.cwd()})" if str(probe_in) == "." else str(probe_in)
    prefix = "" if probe_in == path else f"cannot be made: {name} "
    if probe_in.exists() and not probe_in.is_dir():
        return f"{prefix}is a file, not a folder"
    try:
        with tempfile.NamedTemporaryFile(dir=probe_in, prefix=".litsuite-probe-"):
            pass
    except OSError as err:
        return f"{prefix}is not writable ({err.strerror or type(err).__name__})"
    return None


def check_writable(path: Path, what: str, fix: str) -> None:
    """Raise :class:`PreflightError` naming ``what`` and ``fix`` when ``path`` is not a writable folder."""
    if (problem := folder_problem(path)) is not None:
        raise PreflightError(f"{what} {path} {problem}; {fix}")


def option_values(rest: list[str]) -> dict[str, str]:
    """The last value of every ``--key value`` or ``--key=value`` pass-through option."""
    values: dict[str, str] = {}
    for i, arg in enumerate(rest):
        if not (m := re.match(r"--([\w.]+)(=(.*))?$", arg)):
            continue
        if m.group(2) is not None:
            values[m.group(1)] = m.group(3)
        elif i + 1 < len(rest) and not re.match(r"--[A-Za-z_]", rest[i + 1]):
            values[m.group(1)] = rest[i + 1]
    return values


def _integer(option: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise PreflightError(f"{option} {value}: not a whole number") from None


def check_devices(option: str, value: str) -> None:
    """``devices``: a count ≥ 1, -1 (every device), 'auto', or a list of device indices (``0,1`` or ``[0, 1]``)."""
    text = value.strip()
    if text == "auto":
        return
    if "," in text or text.startswith("["):
        indices = [i.strip() for i in text.strip("[]").split(",") if i.strip()]
        if not indices or not all(i.isdigit() for i in indices):
            raise PreflightError(f"{option} {value}: a list of devices holds their indices, like 0,1 or [0, 1]")
        return
    if _integer(option, text) < 1 and text != "-1":
        raise PreflightError(
            f"{option} {value}: must be at least 1 (or 'auto', -1 for every device, or a list of indices like 0,1)"
        )


def check_at_least_one(option: str, value: str) -> None:
    """``num_nodes``, ``batch_size``: a whole number ≥ 1."""
    if _integer(option, value) < 1:
        raise PreflightError(f"{option} {value}: must be at least 1")


def check_limit(option: str, value: str) -> None:
    """``max_epochs``, ``max_steps``: ≥ 1, or -1 for no limit; 0 would train nothing and say it was done."""
    if value.strip().lower() in ("null", "none"):  # Lightning's own default then applies
        return
    number = _integer(option, value)
    if number == 0:
        raise PreflightError(f"{option} 0 trains nothing; pass 1 or more (or -1 for no limit)")
    if number < -1:
        raise PreflightError(f"{option} {value}: must be at least 1, or -1 for no limit")


# pass-through keys whose values are checked before torch is imported, and how
CHECKED_OPTIONS = {
    "trainer.max_epochs": check_limit,
    "trainer.max_steps": check_limit,
    "trainer.devices": check_devices,
    "trainer.num_nodes": check_at_least_one,
    "data.init_args.batch_size": check_at_least_one,
    "data.batch_size": check_at_least_one,
}


def check_sizes(devices: str | None, num_nodes: int | None, rest: list[str]) -> None:
    """Check the sizes given on the command line: shortcuts and pass-through options alike."""
    if devices is not None:
        check_devices("--devices", devices)
    if num_nodes is not None:
        check_at_least_one("--num_nodes", str(num_nodes))
    for key, value in option_values(rest).items():
        if (check := CHECKED_OPTIONS.get(key)) is not None:
            check(f"--{key}", value)


def check_multi_node(num_nodes: int | None) -> None:
    """``--num_nodes N > 1`` needs a way to find the other machines: SLURM, or MASTER_ADDR on every machine.

    Without either, rank zero would wait for machines that were never told to start (until the DDP timeout).
    """
    if num_nodes is None or num_nodes <= 1 or os.environ.get("SLURM_JOB_ID") or os.environ.get("MASTER_ADDR"):
        return
    raise PreflightError(
        f"--num_nodes {num_nodes}: the other machines are not known; run it under SLURM, or start it on every "
        "machine with MASTER_ADDR, MASTER_PORT and NODE_RANK set (README: Several machines without SLURM)"
    )


def too_many_processes(devices: int, cores: int, gpus: int, accelerator: str) -> str | None:
    """One line when ``devices`` CPU processes per machine would outnumber its cores; None when they fit.

    Args:
        devices: processes the Trainer would start on this machine.
        cores: CPU cores this process may use (:func:`cpu_cores`).
        gpus: GPUs torch sees, only to name what the machine has.
        accelerator: the Trainer's accelerator ('cpu', 'cuda', ...); only CPU processes are counted here
            (Lightning itself refuses more GPUs than exist).
    """
    if accelerator != "cpu" or devices <= cores:
        return None
    has = f"{cores} CPU core{'s' if cores != 1 else ''} and " + (f"{gpus} GPU(s), unused on CPU" if gpus else "no GPU")
    return (
        f"this machine has {has}; --devices {devices} would start {devices} processes; "
        f"use --devices {cores} or fewer, or --oversubscribe"
    )
