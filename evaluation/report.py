"""The report: metrics, tables and figures, written as Markdown plus a self-contained HTML page."""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402


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


def _fmt(value) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.5g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
    return str(value)


@dataclass
class Report:
    """What ``evaluate.py`` writes to ``reports/<run>/``.

    Args:
        title: page heading.
        out_dir: where ``report.md``, ``report.html`` and the PNG figures go.
    """

    title: str
    out_dir: Path
    facts: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    figures: list[FigureEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add_table(self, title: str, header: list[str], rows: list[list], note: str = "") -> None:
        self.tables.append(Table(title, header, rows, note))

    def add_figure(self, name: str, figure: Figure, title: str, caption: str = "") -> Path:
        """Save ``figure`` as ``<out_dir>/<name>.png`` and list it in the report."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{name}.png"
        figure.savefig(path, dpi=110, bbox_inches="tight")
        self.figures.append(FigureEntry(title, path, caption))
        return path

    def add_note(self, text: str) -> None:
        self.notes.append(text)

    def _all_tables(self) -> list[Table]:
        metrics = Table("Test metrics", ["metric", "value"], [[k, v] for k, v in sorted(self.metrics.items())])
        return ([metrics] if self.metrics else []) + self.tables

    def to_markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        lines += [f"- **{key}**: {value}" for key, value in self.facts.items()] + [""]
        for table in self._all_tables():
            lines += [f"## {table.title}", "", "| " + " | ".join(table.header) + " |"]
            lines += ["|" + "---|" * len(table.header)]
            lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in table.rows]
            lines += ([""] + [table.note] if table.note else []) + [""]
        for fig in self.figures:
            lines += [f"## {fig.title}", "", f"![{fig.title}]({fig.path.name})", ""]
            lines += [fig.caption, ""] if fig.caption else []
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
        parts += [f"<li><b>{esc(k)}</b>: {esc(str(v))}</li>" for k, v in self.facts.items()] + ["</ul>"]
        for table in self._all_tables():
            parts += [f"<h2>{esc(table.title)}</h2><table><tr>"] + [f"<th>{esc(h)}</th>" for h in table.header]
            parts += ["</tr>"] + [
                "<tr>" + "".join(f"<td>{esc(_fmt(v))}</td>" for v in row) + "</tr>" for row in table.rows
            ]
            parts += ["</table>"] + ([f"<p>{esc(table.note)}</p>"] if table.note else [])
        for fig in self.figures:
            data = base64.b64encode(fig.path.read_bytes()).decode()
            parts += [f"<h2>{esc(fig.title)}</h2><img alt='{esc(fig.title)}' src='data:image/png;base64,{data}'>"]
            parts += [f"<p>{esc(fig.caption)}</p>"] if fig.caption else []
        if self.notes:
            parts += ["<h2>Notes</h2><ul>"] + [f"<li>{esc(n)}</li>" for n in self.notes] + ["</ul>"]
        return "\n".join(parts + ["</body></html>"])

    def write(self) -> tuple[Path, Path]:
        """Write ``report.md`` and ``report.html``; return their paths."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        md, page = self.out_dir / "report.md", self.out_dir / "report.html"
        md.write_text(self.to_markdown(), encoding="utf-8")
        page.write_text(self.to_html(), encoding="utf-8")
        return md, page
