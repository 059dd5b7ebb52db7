"""The size line at the start of a run: its memory estimate is close to what a training step really
takes, a step that cannot fit is refused in one line that says what would fit, and measuring
changes nothing a resumed run depends on (weights, metric states, random states)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from torch.utils.data import DataLoader, TensorDataset

from datamodules.synthetic import SyntheticDataModule
from lit_modules.capsule import CapsNet
from lit_modules.cnn_baseline import CNNBaseline
from litsuite import sizing

ROOT = Path(__file__).resolve().parents[1]


def small_capsnet(data: SyntheticDataModule) -> CapsNet:
    return CapsNet(data.input_shape, data.num_classes, conv_channels=32, conv_kernel=9, primary_types=8,
                   primary_kernel=9, primary_stride=2, decoder_hidden=(64, 128))


def cpu_trainer(devices: int = 1) -> Trainer:
    strategy = "ddp" if devices > 1 else "auto"
    return Trainer(accelerator="cpu", devices=devices, strategy=strategy, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False)


@pytest.mark.slow
@pytest.mark.measurement  # the resident-set peak depends on the allocator and the machine
def test_estimate_is_within_half_again_of_a_measured_step(tmp_path):
    """A fresh process runs one real step (forward, backward, Adam) of a CapsNet on 28×28 images at
    batch 192; the growth of its peak resident set must lie within a factor 1.5 of the estimate."""
    script = textwrap.dedent(
        """
        import json, resource, sys
        import torch
        sys.path.insert(0, sys.argv[1])
        from tests.test_sizing import small_capsnet
        from datamodules.synthetic import SyntheticDataModule
        from litsuite import activation_memory, sizing

        torch.set_num_threads(1)
        data = SyntheticDataModule(batch_size=192, image_size=28)
        model = small_capsnet(data)
        batch = sizing.sample_batch(data, data.batch_size, torch.device("cpu"))
        optimiser = torch.optim.Adam(model.parameters())
        rss = lambda: int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
        before = rss()
        with open("/proc/self/clear_refs", "w") as f:  # reset the high-water mark to the current set
            f.write("5")
        activation_memory.step_loss(model, batch).backward()
        optimiser.step()
        # VmHWM is the high-water mark clear_refs resets; getrusage's ru_maxrss is never reset
        status = open("/proc/self/status").read()
        peak = int(status.split("VmHWM:")[1].split()[0]) * 1024
        estimate = sizing.measure(model, data, data.batch_size)  # after: its own memory must not count
        print(json.dumps({"measured": peak - before, "estimate": estimate.total - estimate.parameters}))
        """
    )
    # Large blocks straight from mmap: freed memory goes back at once, so the resident set follows
    # what is allocated instead of what malloc keeps cached.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", script, str(ROOT)]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["measured"] > 50e6, result  # well above the noise of a few MB
    ratio = result["estimate"] / result["measured"]
    assert 1 / 1.5 <= ratio <= 1.5, result


def test_summary_names_model_parameters_memory_and_processes():
    data = SyntheticDataModule(batch_size=16, image_size=28)
    line = sizing.size_summary(small_capsnet(data), data, cpu_trainer(devices=2))
    assert line.startswith("capsule: ") and " parameters; about " in line
    assert "per training step at batch 16 (× 2 processes)" in line and "\n" not in line


def test_a_step_that_cannot_fit_is_refused_in_one_line_naming_a_batch_that_fits(monkeypatch):
    data = SyntheticDataModule(batch_size=4096, image_size=28)
    model = small_capsnet(data)
    estimate = sizing.measure(model, data, 32)
    budget = estimate.total  # room for batch 32, not for 4096
    monkeypatch.setattr(sizing, "node_memory", lambda: (budget, "available"))
    monkeypatch.delenv(sizing.BUDGET_ENV, raising=False)
    with pytest.raises(sizing.SizeError) as caught:
        sizing.size_summary(model, data, cpu_trainer())
    message = str(caught.value)
    assert "\n" not in message and message.startswith("capsule needs about ")
    assert "at batch 4096" in message and sizing.human_bytes(budget) in message
    suggested = int(message.split("lower --data.batch_size to ")[1].split()[0])
    assert suggested >= 32
    assert sizing.measure(model, data, suggested).total <= budget < sizing.measure(model, data, suggested + 1).total


def test_nothing_fits_says_so(monkeypatch):
    data = SyntheticDataModule(batch_size=8, image_size=28)
    monkeypatch.setattr(sizing, "node_memory", lambda: (1000, "available"))
    monkeypatch.delenv(sizing.BUDGET_ENV, raising=False)
    with pytest.raises(sizing.SizeError, match="even one sample does not fit"):
        sizing.size_summary(small_capsnet(data), data, cpu_trainer())


def test_measuring_leaves_weights_metrics_and_random_states_untouched():
    data = SyntheticDataModule(batch_size=8, image_size=8)
    model = CNNBaseline(data.input_shape, data.num_classes, channels=(8,), hidden=16, dropout=0.5)
    model.eval()
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    states = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    sizing.size_summary(model, data, cpu_trainer())
    assert torch.equal(torch.get_rng_state(), states[0]) and random.getstate() == states[1]
    assert np.array_equal(np.random.get_state()[1], states[2])
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters()) and not model.training
    assert model.accuracy["train_acc"].update_count == 0  # the probe's step updated a copy's metric


def test_ranks_started_by_lightning_use_rank_zeros_budget(monkeypatch):
    """Every rank of a node compares with one number: rank zero's, which its children inherit."""
    monkeypatch.delenv(sizing.BUDGET_ENV, raising=False)
    monkeypatch.setattr(sizing, "node_memory", lambda: (8_000_000_000, "available"))
    assert sizing.process_budget(cpu_trainer(devices=2))[0] == 4_000_000_000
    monkeypatch.setattr(sizing, "node_memory", lambda: (2_000_000_000, "available"))  # memory moved meanwhile
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert sizing.process_budget(cpu_trainer(devices=2))[0] == 4_000_000_000


class _VectorData(LightningDataModule):
    """A data module with no ``input_shape``: the batch comes from its training set."""

    batch_size = 10

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(20, 5), torch.randn(20, 1)), batch_size=self.batch_size)


class _Regression(LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(5, 1)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])


def test_a_data_module_without_input_shape_is_sized_from_its_training_samples():
    line = sizing.size_summary(_Regression(), _VectorData(), cpu_trainer())
    assert line.startswith("_Regression: 6 parameters; about ") and "at batch 10" in line
