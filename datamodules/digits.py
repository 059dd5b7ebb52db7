"""scikit-learn's handwritten digits (1,797 images, 8×8, 10 classes): ships with scikit-learn, no download."""

from __future__ import annotations

import torch

from datamodules.base import ArrayDataModule


class DigitsDataModule(ArrayDataModule):
    """The UCI optical digits bundled with scikit-learn, scaled from 0..16 to [0, 1].

    There is no official test split, so ``test_fraction`` of the images, chosen by a permutation
    fixed by ``seed``, form it.
    """

    input_shape = (1, 8, 8)
    num_classes = 10
    class_names = tuple(str(d) for d in range(10))

    def __init__(
        self,
        batch_size: int = 128,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        shift: int = 0,
        test_fraction: float = 0.2,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, shift)
        self.test_fraction = test_fraction

    def load_arrays(self):
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        y = torch.tensor(digits.target, dtype=torch.int64)
        permutation = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed + 1))
        n_test = round(self.test_fraction * len(x))
        test, train = permutation[:n_test], permutation[n_test:]
        return x[train], y[train], x[test], y[test]
