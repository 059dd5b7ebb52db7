"""Published and measured figures beside the run's own result, from the one table ``evaluation/figures.yaml``.

Every model declares there, per data set, the metrics it is judged by: the published value with its
source, and the suite's own measurement with the command and time it took. A report shows all of
its model's rows and fills in the run's value where the data set matches (``any`` matches every
data set: figures that hold by theory).
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from evaluation.context import EvalContext
from evaluation.report import Report
from evaluation.stats import is_proportion_metric, percent_with_ci

FIGURES_FILE = Path(__file__).with_name("figures.yaml")
ANY_DATA = "any"
_FIELDS = {"published": ("value", "source"), "measured": ("value", "command", "time")}


class FiguresError(ValueError):
    """``figures.yaml`` does not follow its format; the message names the entry."""


def load_figures(path: Path = FIGURES_FILE) -> dict[str, dict[str, list[dict]]]:
    """``{model: {data: [entry, ...]}}``, checked against the format described at the top of the file."""
    with open(path, encoding="utf-8") as f:
        table = yaml.safe_load(f) or {}
    for model, by_data in table.items():
        if not isinstance(by_data, dict):
            raise FiguresError(f"{path.name}: '{model}' must map data set names to lists of figures (or be {{}})")
        for data, entries in by_data.items():
            where = f"{path.name}: {model} / {data}"
            if not isinstance(entries, list):
                raise FiguresError(f"{where}: expected a list of figures")
            for entry in entries:
                if not isinstance(entry, dict) or not isinstance(entry.get("metric"), str):
                    raise FiguresError(f"{where}: every figure needs a 'metric' key, got {entry!r}")
                if not any(kind in entry for kind in _FIELDS):
                    raise FiguresError(f"{where}: {entry['metric']} has neither 'published' nor 'measured'")
                for kind, keys in _FIELDS.items():
                    if kind in entry and not all(k in (entry[kind] or {}) for k in keys):
                        raise FiguresError(f"{where}: {entry['metric']} '{kind}' needs {', '.join(keys)}")
    return table


def show_value(metric: str, value: float | None, trials: int | None = None) -> str:
    """A figure as the table prints it: shares in per cent (with the Wilson interval when ``trials`` is known)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if is_proportion_metric(metric):
        return percent_with_ci(float(value), trials)
    return f"{float(value):#.4g}"


def figure_rows(entries: dict[str, list[dict]], data_name: str, ctx: EvalContext) -> list[list[str]]:
    """``[data set, metric, published, measured, this run]`` for each declared figure of the model.

    This run's value appears only in rows of its own data set (or ``any``); other rows give context.
    """
    rows = []
    ordered = sorted(entries.items(), key=lambda item: (item[0] not in (data_name, ANY_DATA), item[0]))
    for data, figures in ordered:
        matches = data in (data_name, ANY_DATA)
        for entry in figures:
            metric = entry["metric"]
            published = entry.get("published")
            measured = entry.get("measured")
            rows.append(
                [
                    data,
                    metric,
                    f"{show_value(metric, published['value'])} ({published['source']})" if published else "",
                    f"{show_value(metric, measured['value'])} ({measured['command']}; {measured['time']})"
                    if measured
                    else "",
                    show_value(metric, *ctx.value_of(metric)) if matches else "(another data set)",
                ]
            )
    return rows


def add_figures_section(report: Report, ctx: EvalContext, table: dict | None = None, position: int = 0) -> None:
    """The comparison table for ``ctx.model_name``, inserted at ``position`` among the report's sections."""
    table = load_figures() if table is None else table
    entries = table.get(ctx.model_name)
    if not entries:
        report.add_note(
            f"No published or measured figures are declared for '{ctx.model_name}' in evaluation/figures.yaml."
        )
        return
    rows = figure_rows(entries, ctx.data_name, ctx)
    report.add_table(
        "This run beside published and measured figures",
        ["data set", "metric", "published", "measured by this suite", "this run"],
        rows,
        note="Published: the paper's or article's figure (often a larger network or more data than here). "
        "Measured: this suite's own run of the command shown. Shares with their 95 % Wilson interval over this "
        "run's test cases. Declared in evaluation/figures.yaml.",
    )
    report.sections.insert(position, report.sections.pop())  # add_table appended it last
