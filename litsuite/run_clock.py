"""Training wall time and the machine it ran on, added up across resumed sessions and kept in the checkpoint.

A run that is stopped and resumed trains in several processes, often on different machines; the
report must state what the weights in a checkpoint cost. :class:`RunClock` keeps one entry per
training session (start time, seconds, hardware) and writes them with every checkpoint, so the
count is exactly the training behind that checkpoint: time after the last save of a killed session
did not make it into the weights and is not counted.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import lightning
import torch
from lightning.pytorch import Callback


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The processor's model name from ``/proc/cpuinfo`` (``platform.processor()`` where there is none)."""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def hardware_of(trainer) -> dict:
    """What one training session ran on: devices, processor, library versions (plain values only).

    Plain strings and numbers, so that ``torch.load(weights_only=True)`` still accepts the checkpoint.
    """
    root = trainer.strategy.root_device
    device = str(torch.cuda.get_device_name(root)) if root.type == "cuda" else str(root.type)
    return {
        "accelerator": root.type,
        "device": device,
        "devices_per_node": int(trainer.num_devices),
        "nodes": int(trainer.num_nodes),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count() or 0,
        "torch": str(torch.__version__),
        "lightning": str(lightning.__version__),
        "python": platform.python_version(),
    }


class RunClock(Callback):
    """Adds up the seconds spent in ``fit`` over every session of a run and stores them in each checkpoint.

    The clock runs from ``on_fit_start`` (after the checkpoint of a resumed run is restored) to
    ``on_fit_end``, so it includes validation and the sanity check but not building the model or
    loading the data. A checkpoint written while training is under way counts the time up to that save.
    """

    def __init__(self) -> None:
        self.sessions: list[dict] = []  # finished sessions, restored from the checkpoint
        self._current: dict | None = None
        self._started: float | None = None

    def on_fit_start(self, trainer, pl_module) -> None:
        self._started = time.monotonic()
        self._current = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": 0.0,
            "hardware": hardware_of(trainer),
        }

    def on_train_start(self, trainer, pl_module) -> None:
        # After the checkpoint's loop state is restored: the step this session continues from.
        if self._current is not None:
            self._current["first_step"] = int(trainer.global_step)

    def on_fit_end(self, trainer, pl_module) -> None:
        if self._current is not None:
            self.sessions.append(self._session_now())
        self._current, self._started = None, None

    def _session_now(self) -> dict:
        return {**self._current, "seconds": round(time.monotonic() - self._started, 3)}

    def all_sessions(self) -> list[dict]:
        """Every session so far, the running one with its seconds up to now."""
        return self.sessions + ([self._session_now()] if self._current is not None else [])

    def state_dict(self) -> dict:
        sessions = self.all_sessions()
        return {"train_seconds": sum(s["seconds"] for s in sessions), "sessions": sessions}

    def load_state_dict(self, state_dict: dict) -> None:
        self.sessions = list(state_dict.get("sessions", []))


def clock_state(checkpoint: dict) -> dict | None:
    """The :class:`RunClock` state stored in a loaded checkpoint, or None for a run trained without it."""
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if str(key).split("{")[0] == RunClock.__qualname__:
            return state
    return None
