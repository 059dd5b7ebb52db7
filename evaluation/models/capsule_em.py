"""Report hook for ``capsule_em``: classification sections, routing ablation, overlap test (no decoder)."""

from __future__ import annotations

from evaluation.classification import add_classification_sections
from evaluation.context import EvalContext
from evaluation.overlap import add_overlap_section
from evaluation.report import Report
from evaluation.routing_ablation import add_routing_ablation


def extend_report(report: Report, ctx: EvalContext) -> None:
    add_classification_sections(report, ctx)
    add_routing_ablation(report, ctx)
    add_overlap_section(report, ctx)
