"""The report: facts, metrics, tables and figures, written as Markdown plus a self-contained HTML page."""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

from evaluation.stats import CONFIDENCE, is_proportion_metric, wilson_interval  # noqa: E402


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list]
    note: str = ""


@dataclass
class FigureEntry:
    title: str
    path: Path
    caption: str = ""


@dataclass
class Link:
    """A fact that points to a file: a relative link in both the Markdown and the HTML page."""

    text: str
    target: str

    def __str__(self) -> str:
        return self.text


def _fmt(value) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.5g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
    return str(value)


def metrics_table(metrics: dict[str, float], test_size: int | None) -> Table:
    """Every test metric; beside each accuracy its 95 % Wilson interval over the ``test_size`` test cases."""
    with_ci = test_size is not None and any(is_proportion_metric(k) for k in metrics)
    header = ["metric", "value"] + ([f"{100 * CONFIDENCE:.0f} % interval (Wilson)", "test cases"] if with_ci else [])
    rows = []
    for key, value in sorted(metrics.items()):
        row = [key, value]
        if with_ci:
            if is_proportion_metric(key) and 0.0 <= value <= 1.0:
                low, high = wilson_interval(round(value * test_size), test_size)
                row += [f"{low:.4f}–{high:.4f}", test_size]
            else:
                row += ["", ""]
        rows.append(row)
    note = (
        f"Accuracies are shares of {test_size} test cases; the interval is where the accuracy on unlimited data "
        "from the same distribution lies with 95 % confidence (binomial, Wilson score)."
        if with_ci
        else ""
    )
    return Table("Test metrics", header, rows, note)


@dataclass
class Report:
    """What ``evaluate.py`` writes to ``reports/<run>/``.

    Tables and figures appear in the order they were added, after the facts and the test metrics.

    Args:
        title: page heading.
        out_dir: where ``report.md``, ``report.html`` and the PNG figures go.
    """

    title: str
    out_dir: Path
    facts: dict[str, str | Link] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    test_size: int | None = None  # test cases behind ``metrics``, for the accuracies' intervals
    tables: list[Table] = field(default_factory=list)
    figures: list[FigureEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sections: list[Table | FigureEntry] = field(default_factory=list)

    def add_table(self, title: str, header: list[str], rows: list[list], note: str = "") -> Table:
        table = Table(title, header, rows, note)
        self.tables.append(table)
        self.sections.append(table)
        return table

    def add_figure(self, name: str, figure: Figure, title: str, caption: str = "") -> Path:
        """Save ``figure`` as ``<out_dir>/<name>.png`` and list it in the report."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{name}.png"
        figure.savefig(path, dpi=110, bbox_inches="tight")
        entry = FigureEntry(title, path, caption)
        self.figures.append(entry)
        self.sections.append(entry)
        return path

    def add_note(self, text: str) -> None:
        self.notes.append(text)

    def _all_sections(self) -> list[Table | FigureEntry]:
        return ([metrics_table(self.metrics, self.test_size)] if self.metrics else []) + self.sections

    def to_markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        for key, value in self.facts.items():
            shown = f"[{value.text}]({value.target})" if isinstance(value, Link) else value
            lines.append(f"- **{key}**: {shown}")
        lines.append("")
        for section in self._all_sections():
            if isinstance(section, Table):
                lines += [f"## {section.title}", "", "| " + " | ".join(section.header) + " |"]
                lines += ["|" + "---|" * len(section.header)]
                lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in section.rows]
                lines += ([""] + [section.note] if section.note else []) + [""]
            else:
                lines += [f"## {section.title}", "", f"![{section.title}]({section.path.name})", ""]
                lines += [section.caption, ""] if section.caption else []
        if self.notes:
            lines += ["## Notes", ""] + [f"- {n}" for n in self.notes] + [""]
        return "\n".join(lines)

    def to_html(self) -> str:
        esc = html.escape
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{esc(self.title)}</title><style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
            "th{background:#f3f3f3}img{max-width:100%}</style></head><body>",
            f"<h1>{esc(self.title)}</h1><ul>",
        ]
        for key, value in self.facts.items():
            shown = f"<a href='{esc(value.target)}'>{esc(value.text)}</a>" if isinstance(value, Link) else esc(value)
            parts.append(f"<li><b>{esc(key)}</b>: {shown}</li>")
        parts.append("</ul>")
        for section in self._all_sections():
            if isinstance(section, Table):
                parts += [f"<h2>{esc(section.title)}</h2><table><tr>"] + [f"<th>{esc(h)}</th>" for h in section.header]
                parts += ["</tr>"] + [
                    "<tr>" + "".join(f"<td>{esc(_fmt(v))}</td>" for v in row) + "</tr>" for row in section.rows
                ]
                parts += ["</table>"] + ([f"<p>{esc(section.note)}</p>"] if section.note else [])
            else:
                data = base64.b64encode(section.path.read_bytes()).decode()
                parts += [f"<h2>{esc(section.title)}</h2>"]
                parts += [f"<img alt='{esc(section.title)}' src='data:image/png;base64,{data}'>"]
                parts += [f"<p>{esc(section.caption)}</p>"] if section.caption else []
        if self.notes:
            parts += ["<h2>Notes</h2><ul>"] + [f"<li>{esc(n)}</li>" for n in self.notes] + ["</ul>"]
        return "\n".join(parts + ["</body></html>"])

    def write(self) -> tuple[Path, Path]:
        """Write ``report.md`` and ``report.html``; return their paths."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        md, page = self.out_dir / "report.md", self.out_dir / "report.html"
        markdown, page_text = self.to_markdown(), self.to_html()  # both built before either file is written
        md.write_text(markdown, encoding="utf-8")
        page.write_text(page_text, encoding="utf-8")
        return md, page
