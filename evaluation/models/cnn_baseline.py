"""Report hook for ``cnn_baseline``: classification sections and the overlap test (no routing, no decoder)."""

from __future__ import annotations

from evaluation.classification import add_classification_sections
from evaluation.context import EvalContext
from evaluation.overlap import add_overlap_section
from evaluation.report import Report


def extend_report(report: Report, ctx: EvalContext) -> None:
    add_classification_sections(report, ctx)
    add_overlap_section(report, ctx)
