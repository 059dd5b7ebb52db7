"""What a report hook receives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lightning.pytorch import LightningDataModule, LightningModule, Trainer


@dataclass
class EvalContext:
    """The evaluated run: trained model, its data module (set up for testing), the trainer and test metrics."""

    model_name: str
    model: LightningModule
    datamodule: LightningDataModule
    trainer: Trainer
    metrics: dict[str, float]
    run_dir: Path
    ckpt_path: Path
