"""Data modules: shapes, splits fixed by seed, and clear errors for missing or damaged files."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.base import DataError
from datamodules.digits import DigitsDataModule
from datamodules.idx import read_idx
from datamodules.mnist import FashionMNISTDataModule, MNISTDataModule
from datamodules.synthetic import SyntheticDataModule

SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def fake_mnist(directory: Path, n_train: int = 24, n_test: int = 8, compress: bool = True) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    suffix = ".gz" if compress else ""
    write_idx(directory / f"train-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n_train, 28, 28)), compress)
    write_idx(directory / f"train-labels-idx1-ubyte{suffix}", np.arange(n_train) % 10, compress)
    write_idx(directory / f"t10k-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n_test, 28, 28)), compress)
    write_idx(directory / f"t10k-labels-idx1-ubyte{suffix}", np.arange(n_test) % 10, compress)


def test_digits_shapes_range_and_fixed_disjoint_splits():
    a, b = DigitsDataModule(seed=3), DigitsDataModule(seed=3)
    a.setup(), b.setup()
    xa, ya = a.train_set.tensors
    assert xa.shape[1:] == (1, 8, 8) and xa.min() >= 0 and xa.max() <= 1 and ya.max() == 9
    assert torch.equal(xa, b.train_set.tensors[0]) and torch.equal(a.test_set.tensors[0], b.test_set.tensors[0])
    assert len(a.train_set) + len(a.val_set) + len(a.test_set) == 1797
    c = DigitsDataModule(seed=4)
    c.setup()
    assert not torch.equal(xa, c.train_set.tensors[0])


def test_shuffle_order_depends_only_on_seed_and_epoch():
    dm = SyntheticDataModule(batch_size=8)
    dm.setup()

    def order(epoch):
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return list(loader.sampler)

    assert order(0) == order(0) and order(0) != order(1)


def test_batches_are_gathered_whole_and_equal_per_sample_collation():
    """The loaders gather a batch with one index per tensor; the result is what per-sample loading gives."""
    from torch.utils.data import DataLoader, Dataset

    dm = SyntheticDataModule(num_samples=200, batch_size=32)
    dm.setup("fit")
    loader = dm.train_dataloader()

    class PerSample(Dataset):  # no __getitems__: the loader falls back to __getitem__ and default_collate
        def __len__(self):
            return len(dm.train_set)

        def __getitem__(self, i):
            return dm.train_set[i]

    reference = DataLoader(PerSample(), batch_size=32, sampler=loader.sampler, collate_fn=loader.collate_fn)
    pairs = list(zip(loader, reference, strict=True))
    assert len(pairs) == -(-len(dm.train_set) // 32) > 1
    for (x, y), (x_ref, y_ref) in pairs:
        assert x.shape[1:] == dm.input_shape and torch.equal(x, x_ref) and torch.equal(y, y_ref)


def test_idx_round_trip_plain_and_gzip(tmp_path):
    fake_mnist(tmp_path / "plain", compress=False)
    fake_mnist(tmp_path / "gz", compress=True)
    a = read_idx(tmp_path / "plain" / "train-images-idx3-ubyte")
    b = read_idx(tmp_path / "gz" / "train-images-idx3-ubyte.gz")
    assert a.shape == (24, 28, 28) and np.array_equal(a, b)
    dm = MNISTDataModule(data_dir=str(tmp_path / "gz"), val_fraction=0.25)
    dm.setup()
    assert dm.train_set.tensors[0].shape == (18, 1, 28, 28) and len(dm.test_set) == 8


def test_truncated_idx_names_the_file(tmp_path):
    fake_mnist(tmp_path, compress=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="train-images-idx3-ubyte: truncated"):
        MNISTDataModule(data_dir=str(tmp_path)).setup()


def test_corrupt_gzip_names_the_file(tmp_path):
    fake_mnist(tmp_path, compress=True)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: cannot be read or decompressed"):
        MNISTDataModule(data_dir=str(tmp_path)).setup()


def test_bad_magic_is_reported(tmp_path):
    fake_mnist(tmp_path, compress=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(DataError, match="bad magic"):
        MNISTDataModule(data_dir=str(tmp_path)).setup()


def test_missing_data_names_the_folders_and_the_fix(tmp_path):
    with pytest.raises(DataError) as err:
        FashionMNISTDataModule(data_dir=str(tmp_path / "nowhere")).setup()
    message = str(err.value)
    assert str(tmp_path / "nowhere") in message and "apt-get install dataset-fashion-mnist" in message
    assert "--data.download true" in message


def test_download_failure_offline_is_clear(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataError, match="downloading MNIST .* failed"):
        MNISTDataModule(data_dir=str(tmp_path), download=True).prepare_data()


@pytest.mark.skipif(
    not SYSTEM_FASHION.is_dir() and os.environ.get("CI") != "true", reason="dataset-fashion-mnist not installed"
)
def test_fashion_mnist_found_in_the_system_folder():
    dm = FashionMNISTDataModule()
    dm.setup()
    assert len(dm.train_set) + len(dm.val_set) == 60000 and len(dm.test_set) == 10000
    assert dm.train_set.tensors[0].shape[1:] == (1, 28, 28)


def test_random_shift_moves_each_image_by_at_most_the_shift_and_covers_every_offset():
    from datamodules.batch_transforms import random_shift

    torch.manual_seed(0)
    images = torch.zeros(400, 1, 8, 8)
    images[:, 0, 4, 3] = 1.0
    shifted = random_shift(images, 1)
    assert shifted.shape == images.shape and torch.equal(shifted.sum(dim=(1, 2, 3)), torch.ones(400))
    rows, cols = (shifted[:, 0] == 1).nonzero()[:, 1:].T
    offsets = set(zip((rows - 4).tolist(), (cols - 3).tolist(), strict=True))
    assert offsets == {(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)}
    assert torch.equal(random_shift(images, 0), images)


def test_shift_applies_to_training_batches_only():
    from types import SimpleNamespace

    dm = DigitsDataModule(shift=2)
    batch = (torch.rand(16, 1, 8, 8), torch.zeros(16, dtype=torch.long))
    assert dm.on_after_batch_transfer(batch, 0) is batch  # no trainer: evaluation code, leave it
    dm.trainer = SimpleNamespace(training=False)
    assert dm.on_after_batch_transfer(batch, 0) is batch
    dm.trainer = SimpleNamespace(training=True)
    moved, labels = dm.on_after_batch_transfer(batch, 0)
    assert moved.shape == batch[0].shape and not torch.equal(moved, batch[0]) and labels is batch[1]
    with pytest.raises(ValueError, match="shift must be >= 0"):
        DigitsDataModule(shift=-1)
