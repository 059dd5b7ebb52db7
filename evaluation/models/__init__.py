"""Per-model report hooks.

To give model ``NAME`` its own figures and tables, add ``evaluation/models/NAME.py`` defining::

    def extend_report(report: Report, ctx: EvalContext) -> None:
        report.add_table(...); report.add_figure(...)

``evaluate.py`` calls it after the test split has run; ``ctx`` holds the model, the data module,
the trainer, the test metrics and the run directory. A model without such a file gets the
generic report (metrics table and training curves).
"""
