"""Training curves from a run's ``metrics.csv`` (written by the CSV logger every run carries)."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

from matplotlib.figure import Figure


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
    return dict(series)


def _is_sweep_member(key: str) -> bool:
    """Per-k copies such as ``val/error_ratio_k8`` crowd the figure; the main metric stands for them."""
    last = key.rsplit("_", 1)[-1]
    return last.startswith("k") and last[1:].isdigit()


def training_curves(series: dict[str, list[tuple[int, float]]], max_panels: int = 6) -> Figure | None:
    """One panel per metric family (train/…, val/…), against the optimiser step."""
    keys = [k for k in series if k.startswith(("train/", "val/")) and not _is_sweep_member(k)][:max_panels]
    if not keys:
        return None
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows))
    for i, key in enumerate(keys):
        ax = fig.add_subplot(rows, cols, i + 1)
        steps, values = zip(*series[key])
        ax.plot(steps, values, marker="." if len(steps) < 50 else None)
        ax.set_title(key)
        ax.set_xlabel("step")
        if all(v > 0 for v in values) and max(values) / min(values) > 100:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
