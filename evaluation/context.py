"""What a report hook receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lightning.pytorch import LightningDataModule, LightningModule, Trainer


@dataclass
class EvalContext:
    """The evaluated run: the trained model (checkpoint weights loaded), its data module, the trainer, the test metrics.

    Attributes:
        model_name: the registry name (``configs/model/<name>.yaml``), or the class name of an unregistered model.
        metrics: what ``trainer.test`` returned; empty when there was no test pass (the model has no
            ``test_step`` or the data module no test split).
        test_size: test cases behind ``metrics`` (None without a test pass or for a data set of unknown length).
        results: headline numbers a report section computed itself (e.g. ``overlap/top2_pair``), keyed
            like the metrics, so that ``evaluation/figures.yaml`` can compare them with published figures.
        result_sizes: the number of test cases behind each entry of ``results``, for its confidence interval.
        data_name: the registry name of the data set.
    """

    model_name: str
    model: LightningModule
    datamodule: LightningDataModule
    trainer: Trainer
    metrics: dict[str, float]
    run_dir: Path
    ckpt_path: Path
    test_size: int | None = None
    results: dict[str, float] = field(default_factory=dict)
    result_sizes: dict[str, int] = field(default_factory=dict)
    data_name: str = ""

    @property
    def has_test_pass(self) -> bool:
        return bool(self.metrics)

    def value_of(self, key: str) -> tuple[float | None, int | None]:
        """A test metric or a section's result by key, with the number of test cases behind it."""
        if key in self.metrics:
            return self.metrics[key], self.test_size
        if key in self.results:
            return self.results[key], self.result_sizes.get(key)
        return None, None
