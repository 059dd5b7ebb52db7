"""How a run was made, read from its ``config.yaml`` and checkpoint: settings, progress, time, hardware.

Pure functions of the loaded config and checkpoint dictionaries, so that they can be checked
without training anything.
"""

from __future__ import annotations

import json

from litsuite.run_clock import clock_state

# Trainer settings that change what a run computes or how long it trained; the rest of the resolved
# trainer section (logging, progress bar, paths) is in config.yaml, linked from the report.
TRAINER_KEYS = (
    "accelerator",
    "strategy",
    "devices",
    "num_nodes",
    "precision",
    "max_epochs",
    "max_steps",
    "max_time",
    "accumulate_grad_batches",
    "gradient_clip_val",
    "gradient_clip_algorithm",
    "limit_train_batches",
    "val_check_interval",
    "check_val_every_n_epoch",
    "deterministic",
    "benchmark",
)
NOT_RECORDED = "not recorded (trained before the run clock was kept in checkpoints)"


def _show(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def hyperparameter_rows(config: dict, model_hparams: dict | None = None) -> list[list[str]]:
    """``[section, setting, value]`` rows: the model's and data's arguments, the trainer settings that matter.

    Args:
        config: the run's resolved ``config.yaml``.
        model_hparams: the model's saved hyperparameters; they add the arguments linked from the
            data module (``input_shape``, ``num_classes``), which the config does not hold.
    """
    rows = [["run", "seed_everything", _show(config.get("seed_everything"))]]
    model_args = dict((config.get("model") or {}).get("init_args") or {})
    model_args.update({k: v for k, v in (model_hparams or {}).items() if not k.startswith("_")})
    rows += [["model", key, _show(value)] for key, value in model_args.items()]
    rows += [["data", key, _show(value)] for key, value in ((config.get("data") or {}).get("init_args") or {}).items()]
    trainer = config.get("trainer") or {}
    rows += [["trainer", key, _show(trainer[key])] for key in TRAINER_KEYS if trainer.get(key) is not None]
    checkpoint = config.get("checkpoint") or {}
    rows += [["checkpoint", key, _show(checkpoint[key])] for key in ("monitor", "mode") if checkpoint.get(key)]
    return rows


def training_progress(checkpoint: dict) -> str:
    """Epochs, batches and optimiser steps behind a checkpoint, from Lightning's loop counters.

    A checkpoint taken mid-epoch (a preempted run, or a validation inside an epoch) says how far into
    the unfinished epoch it got; one written at a validation after an epoch's last batch, before Lightning
    counts the epoch as processed, counts that epoch (its batches are as many as each earlier epoch's).
    """
    steps = checkpoint.get("global_step", 0)
    fit_loop = (checkpoint.get("loops") or {}).get("fit_loop") or {}
    epochs = ((fit_loop.get("epoch_progress") or {}).get("total") or {}).get("processed")
    batches = fit_loop.get("epoch_loop.batch_progress") or {}
    if epochs is None:  # no loop state: only the epoch index is known
        return f"to epoch index {checkpoint.get('epoch')} ({steps:,} optimiser steps)"
    total_batches = (batches.get("total") or {}).get("completed", 0)
    text = f"{epochs} epoch{'s' if epochs != 1 else ''}"
    in_epoch = (batches.get("current") or {}).get("completed", 0)
    started = ((fit_loop.get("epoch_progress") or {}).get("total") or {}).get("started", epochs)
    if started > epochs and in_epoch:
        if epochs and total_batches - in_epoch == epochs * in_epoch:  # the epoch's batches were all done
            epochs += 1
            text = f"{epochs} epochs (written at the last validation of the last one, before its end)"
        else:
            text += f" and {in_epoch} batches of the next (a checkpoint from inside an epoch)"
    return f"{text}: {total_batches:,} training batches, {steps:,} optimiser steps"


def duration(seconds: float) -> str:
    """``"2 h 03 min"``, ``"4 min 12 s"`` or ``"8.3 s"``."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    if seconds >= 60:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{seconds:.1f} s"


def training_time(checkpoint: dict) -> str:
    """Wall time of training summed over the run's sessions, or :data:`NOT_RECORDED`."""
    state = clock_state(checkpoint)
    if state is None:
        return NOT_RECORDED
    sessions = state.get("sessions") or []
    text = duration(float(state.get("train_seconds", 0.0)))
    if len(sessions) > 1:
        text += f" in {len(sessions)} sessions (" + " + ".join(duration(s["seconds"]) for s in sessions) + ")"
    return text


def resumed_at(checkpoint: dict) -> list[int]:
    """Steps at which a later training session of the run took over (empty for a run trained in one go)."""
    sessions = (clock_state(checkpoint) or {}).get("sessions") or []
    return [s["first_step"] for s in sessions[1:] if "first_step" in s]


def describe_hardware(hardware: dict) -> str:
    """One line: ``"1 × cpu (Intel Xeon …, 2 cores); torch 2.14.1, lightning 2.6.6"``."""
    count = hardware.get("devices_per_node", 1) * hardware.get("nodes", 1)
    nodes = f" on {hardware['nodes']} nodes" if hardware.get("nodes", 1) > 1 else ""
    device = hardware.get("device", "?")
    text = f"{count} × {device}{nodes}; CPU {hardware.get('cpu', '?')} ({hardware.get('cpu_cores', '?')} cores)"
    return text + f"; torch {hardware.get('torch', '?')}, lightning {hardware.get('lightning', '?')}"


def training_hardware(checkpoint: dict) -> str:
    """The machines the run trained on, once per distinct machine, or :data:`NOT_RECORDED`."""
    state = clock_state(checkpoint)
    if state is None or not state.get("sessions"):
        return NOT_RECORDED
    seen: list[str] = []
    for session in state["sessions"]:
        line = describe_hardware(session.get("hardware") or {})
        if line not in seen:
            seen.append(line)
    return seen[0] if len(seen) == 1 else " | ".join(f"session(s) on {line}" for line in seen)


def parameter_count(model) -> str:
    """``"12,345 (all trainable)"`` or ``"12,345, of which 1,000 trainable"``."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"{total:,} (all trainable)" if trainable == total else f"{total:,}, of which {trainable:,} trainable"
