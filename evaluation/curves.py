"""Training curves from a run's ``metrics.csv`` (written by the CSV logger every run carries, across sessions)."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

from matplotlib.figure import Figure

STAGES = ("train", "val")
STAGE_COLOURS = {"train": "tab:blue", "val": "tab:orange"}


def superseded_dropped(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """A series without the points a later session trained over again.

    A run killed after its last checkpoint logged steps that the resumed session repeats from that
    checkpoint; where the step goes back, the earlier points from that step on are dropped, since
    the weights they describe were thrown away.
    """
    kept: list[tuple[int, float]] = []
    for step, value in points:
        while kept and kept[-1][0] >= step:
            kept.pop()
        kept.append((step, value))
    return kept


def read_metrics_csv(path: Path) -> dict[str, list[tuple[int, float]]]:
    """``{metric: [(step, value), ...]}`` from a Lightning CSV log; empty cells are skipped."""
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            step = int(float(row.get("step") or 0))
            for key, value in row.items():
                if key in ("step", "epoch") or value in (None, ""):
                    continue
                series[key].append((step, float(value)))
    return {key: superseded_dropped(points) for key, points in series.items()}


def _is_sweep_member(key: str) -> bool:
    """Per-k copies such as ``val/error_ratio_k8`` crowd the figure; the main metric stands for them."""
    last = key.rsplit("_", 1)[-1]
    return last.startswith("k") and last[1:].isdigit()


def curve_panels(keys, max_panels: int = 6) -> dict[str, list[str]]:
    """``{quantity: [train/quantity, val/quantity]}``: one panel per quantity, the loss first.

    Training and validation of the same quantity share a panel, so the gap between them (over- or
    under-fitting) can be read off.
    """
    panels: dict[str, list[str]] = {}
    for key in keys:
        stage, _, name = key.partition("/")
        if stage in STAGES and name and not _is_sweep_member(key):
            panels.setdefault(name, []).append(key)
    order = sorted(panels, key=lambda name: (name != "loss", "acc" not in name))  # stable: log order otherwise
    return {name: sorted(panels[name], key=lambda k: STAGES.index(k.partition("/")[0])) for name in order[:max_panels]}


def samples_per_step(config: dict) -> int | None:
    """Training samples one optimiser step consumes, from a run's ``config.yaml``: the per-device batch ×
    devices × nodes × gradient accumulation; None when the config does not fix them as integers."""
    trainer = config.get("trainer") or {}
    factors = [((config.get("data") or {}).get("init_args") or {}).get("batch_size"), trainer.get("devices", 1),
               trainer.get("num_nodes", 1), trainer.get("accumulate_grad_batches") or 1]
    if not all(isinstance(f, int) and not isinstance(f, bool) and f > 0 for f in factors):
        return None
    return math.prod(factors)


def training_curves(
    series: dict[str, list[tuple[int, float]]],
    max_panels: int = 6,
    session_starts: list[int] | None = None,
    step_samples: int | None = None,
) -> Figure | None:
    """One panel per quantity (training and validation together), against the optimiser step.

    Args:
        series: from :func:`read_metrics_csv`.
        max_panels: quantities shown at most.
        session_starts: steps at which a resumed session began, drawn as dashed lines.
        step_samples: samples per optimiser step; given, a second axis on top reads "samples seen".
    """
    panels = curve_panels(series, max_panels)
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows))
    for i, (name, keys) in enumerate(panels.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        values_seen = []
        for key in keys:
            steps, values = zip(*series[key])
            stage = key.partition("/")[0]
            ax.plot(steps, values, marker="." if len(steps) < 50 else None, label=stage, color=STAGE_COLOURS[stage])
            values_seen += values
        for start in session_starts or []:
            ax.axvline(start, color="grey", ls="--", lw=0.8)
        ax.set_title(name)
        ax.set_xlabel("step")
        if step_samples:
            top = ax.secondary_xaxis("top", functions=(lambda x: x * step_samples, lambda n: n / step_samples))
            top.set_xlabel("samples seen", fontsize=8)
            top.tick_params(labelsize=7)
        if all(v > 0 for v in values_seen) and max(values_seen) / min(values_seen) > 100:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
