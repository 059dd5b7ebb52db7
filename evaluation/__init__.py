"""Evaluation reports: the writer (``report.py``), shared figures, and one hook file per model in ``models/``."""
