"""Plumbing shared by ``train.py`` and ``evaluate.py``: registry, run directories, CLI, callbacks."""
