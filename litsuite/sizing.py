"""How large a run is, said once at its start: parameters and memory per training step; refuse what cannot fit.

The memory of a training step is estimated as parameters + gradients + optimiser state +
activations. The activations are measured, not guessed: a copy of the model runs its
``training_step`` and backward pass on two and on three samples while every operation's live
bytes are noted (:mod:`litsuite.activation_memory`); each operation's growth per sample is scaled
to the configured batch and the largest result taken. The comparison is with the memory one process of
this node may use: the free memory of its GPU, or on a CPU the node's available memory (the
SLURM allocation when there is one) shared by the processes the Trainer starts on it.
"""

from __future__ import annotations

import copy
import os
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from litsuite.activation_memory import paired_operations, step_live_bytes

# The per-process budget rank zero found, handed to the ranks Lightning starts (they inherit the
# environment), so that every rank of a node compares its estimate with the same number.
BUDGET_ENV = "LITSUITE_MEMORY_BUDGET"
OPTIMISER_COPIES = 2  # tensors of optimiser state per trainable parameter: Adam's two moments


class SizeError(ValueError):
    """A configuration whose training step needs more memory than this machine has; one line with the fix."""


@dataclass(frozen=True)
class StepMemory:
    """Bytes one process needs for a training step, by what holds them.

    ``activation_lines`` holds, for every operation of the step, the bytes live while it runs as
    ``(fixed, per_sample)``: the activations at batch ``B`` are ``max(fixed + per_sample × B)``.
    Taking the maximum after scaling matters: at a small batch the peak may sit in a backward
    operation of fixed size, at a large one in a per-sample transient.
    """

    parameters: int
    gradients: int
    optimiser: int
    buckets: int  # DDP's copy of the gradients it all-reduces
    activation_lines: tuple[tuple[int, int], ...]
    batch_size: int

    def activations_at(self, batch: int) -> int:
        return max((fixed + per * batch for fixed, per in self.activation_lines), default=0)

    @property
    def activations(self) -> int:
        return self.activations_at(self.batch_size)

    @property
    def state(self) -> int:
        """Parameters, gradients, optimiser state and DDP buckets: what does not grow with the batch."""
        return self.parameters + self.gradients + self.optimiser + self.buckets

    @property
    def total(self) -> int:
        return self.state + self.activations

    def largest_batch(self, budget: int) -> int:
        """The largest batch whose step fits in ``budget`` bytes (0 if not even one sample fits)."""
        room = budget - self.state
        limits = [(room - fixed) // per for fixed, per in self.activation_lines if per > 0]
        if any(fixed > room for fixed, per in self.activation_lines if per <= 0):
            return 0
        return max(0, min(limits, default=2**31))


def human_bytes(n: float) -> str:
    """``1.2 GB``, ``340 MB``: decimal units, two significant figures or more."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{int(n)} B"


def human_count(n: int) -> str:
    """``6.8 M``, ``25 K``, ``310``."""
    if n >= 1e6:
        return f"{n / 1e6:.1f} M"
    if n >= 1e3:
        return f"{n / 1e3:.0f} K" if n >= 1e4 else f"{n / 1e3:.1f} K"
    return str(n)


def sample_batch(datamodule, n: int, device: torch.device):
    """A batch of ``n`` samples as the model's ``training_step`` receives it.

    A data module that states ``input_shape`` delivers ``(images, labels)`` (the suite's image
    convention): random images of that shape, drawn from a private generator, are enough, since
    no model's memory depends on pixel values, and they need no loaded data (DDP ranks other than
    zero have not loaded theirs yet). Any other data module: its first training samples, collated.
    """
    shape = getattr(datamodule, "input_shape", None)
    if shape:
        images = torch.rand(n, *shape, generator=torch.Generator().manual_seed(0))
        labels = torch.arange(n) % max(int(getattr(datamodule, "num_classes", 2) or 2), 1)
        return images.to(device), labels.to(device)
    loader = datamodule.train_dataloader()
    batch = loader.collate_fn([loader.dataset[i] for i in range(n)])
    return datamodule.transfer_batch_to_device(batch, device, 0)


def measure(model: nn.Module, datamodule, batch_size: int, world_size: int = 1) -> StepMemory:
    """One process's memory for a training step at ``batch_size``; ``model`` and every RNG are left as they were.

    The model is copied (so its weights, buffers and metric states are untouched) and runs in
    training mode; the CPU, CUDA, Python and NumPy random states are restored afterwards, so a
    resumed run stays bit-exact.
    """
    trainer = getattr(model, "_trainer", None)
    memo = {id(trainer): None} if trainer is not None else {}
    with _rng_preserved(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a running Trainer warns and does nothing
        probe = copy.deepcopy(model, memo)
        probe.train()
        device = next(probe.parameters(), torch.empty(0)).device
        # Two and three samples, not one: at one sample a broadcast (a weight shared over the batch)
        # can stay a view where any larger batch materialises a copy per sample.
        small, large = (step_live_bytes(probe, sample_batch(datamodule, n, device)) for n in (2, 3))
        del probe
    lines = {(max(a - 2 * (b - a), 0), max(b - a, 0)) for a, b in paired_operations(small, large)}
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    every = sum(p.numel() * p.element_size() for p in model.parameters())
    return StepMemory(
        parameters=every,
        gradients=trainable,
        optimiser=OPTIMISER_COPIES * trainable,
        buckets=trainable if world_size > 1 else 0,
        activation_lines=tuple(sorted(lines)),
        batch_size=batch_size,
    )


class _rng_preserved:
    """Context manager: the global torch (CPU and initialised CUDA), Python and NumPy RNG states come back."""

    def __enter__(self):
        self.torch = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        self.python = random.getstate()
        self.numpy = np.random.get_state()
        return self

    def __exit__(self, *exc):
        torch.set_rng_state(self.torch)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)
        random.setstate(self.python)
        np.random.set_state(self.numpy)
        return False


def _meminfo(key: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _cgroup_room() -> int | None:
    """Memory left under this process's cgroup v2 limit, if it has one."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return None


def node_memory() -> tuple[int, str] | None:
    """Bytes this node offers the run on its CPUs, and where the figure comes from; None if unknown."""
    if mb := os.environ.get("SLURM_MEM_PER_NODE"):
        return int(mb) * 2**20, "the SLURM allocation"
    if (mb := os.environ.get("SLURM_MEM_PER_CPU")) and (cpus := os.environ.get("SLURM_CPUS_ON_NODE")):
        return int(mb) * int(cpus) * 2**20, "the SLURM allocation"
    available = _meminfo("MemAvailable")
    room = _cgroup_room()
    if room is not None and (available is None or room < available):
        return room, "the cgroup limit"
    return (available, "available") if available is not None else None


def process_budget(trainer) -> tuple[int, str] | None:
    """Bytes one training process of this node may use, with a description; None if unknown."""
    device = trainer.strategy.root_device
    if device.type == "cuda":
        if getattr(getattr(trainer.strategy, "launcher", None), "is_interactive_compatible", False):
            return None  # a forking launcher needs CUDA uninitialised, and asking for free memory initialises it
        free, _ = torch.cuda.mem_get_info(device)
        return free, f"{human_bytes(free)} free on {device}"
    processes = max(int(trainer.num_devices), 1)
    inherited = os.environ.get(BUDGET_ENV) if int(os.environ.get("LOCAL_RANK", "0") or 0) > 0 else None
    if inherited:
        node, where = int(inherited) * processes, "available"
    elif (found := node_memory()) is not None:
        node, where = found
        os.environ[BUDGET_ENV] = str(node // processes)  # for the ranks Lightning starts from this one
    else:
        return None
    share = f" ({human_bytes(node // processes)} per process)" if processes > 1 else ""
    return node // processes, f"{human_bytes(node)} {where} on this node{share}"


def size_summary(model, datamodule, trainer) -> str:
    """One line on the run's size: parameters and memory per training step. Raises :class:`SizeError`
    (one line: the estimate, what the machine has, what to change) when a step cannot fit."""
    from litsuite import registry

    cls = type(model)
    name = registry.model_name_of(f"{cls.__module__}.{cls.__qualname__}")
    batch = int(getattr(datamodule, "batch_size", 1) or 1)
    processes = max(int(trainer.num_devices), 1)
    count = sum(p.numel() for p in model.parameters())
    per = f" (× {processes} processes)" if processes > 1 else ""
    try:
        estimate = measure(model, datamodule, batch, trainer.world_size)
    except Exception as err:  # noqa: BLE001 - a step that needs a running Trainer (manual optimisation, no forward)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return f"{name}: {human_count(count)} parameters; memory per step not measured ({reason})"
    line = (
        f"{name}: {human_count(count)} parameters;"
        f" about {human_bytes(estimate.total)} per training step at batch {batch}{per}"
    )
    budget = process_budget(trainer)
    if budget is None or estimate.total <= budget[0]:
        return line
    fits = estimate.largest_batch(budget[0])
    registered = name in registry.model_names()
    recipes = f" (the configs/model/{name}@<data>.yaml recipes are sized for a CPU)" if registered else ""
    change = (
        f"lower --data.batch_size to {fits} or less, or train a smaller network"
        if fits >= 1
        else "even one sample does not fit: train a smaller network"
    )
    raise SizeError(
        f"{name} needs about {human_bytes(estimate.total)} per training step at batch {batch}"
        f" (activations {human_bytes(estimate.activations)}, {human_count(count)} parameters with gradients and"
        f" optimiser state {human_bytes(estimate.state)}), but this machine has"
        f" {budget[1]}: {change}{recipes}"
    )

