"""CIFAR-10 through torchvision (python-pickle batches), held in memory as float tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from datamodules.base import ArrayDataModule, DataError


class CIFAR10DataModule(ArrayDataModule):
    """CIFAR-10 (50,000 + 10,000 colour images, 32×32, 10 classes).

    Args:
        data_dir: folder holding ``cifar-10-batches-py`` (torchvision's layout); default ``./data/cifar10``.
        download: let torchvision download the archive when it is missing (needs a network).
    """

    input_shape = (3, 32, 32)
    num_classes = 10
    class_names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

    def __init__(
        self,
        batch_size: int = 128,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        shift: int = 0,
        data_dir: str | None = None,
        download: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, shift)
        self.data_dir = data_dir or str(Path("data") / "cifar10")
        self.download = download

    def _dataset(self, train: bool, download: bool):
        import torchvision

        try:
            return torchvision.datasets.CIFAR10(self.data_dir, train=train, download=download)
        except RuntimeError as err:  # "Dataset not found or corrupted"
            raise DataError(
                f"CIFAR-10 not found or corrupt in {Path(self.data_dir) / 'cifar-10-batches-py'} ({err}). "
                "Pass --data.data_dir DIR holding cifar-10-batches-py, or --data.download true with a network."
            ) from err
        except Exception as err:  # URLError and friends when offline
            raise DataError(f"downloading CIFAR-10 into {self.data_dir} failed ({err}); is there a network?") from err

    def prepare_data(self) -> None:
        if self.download:
            self._dataset(True, True)
            self._dataset(False, True)

    def load_arrays(self):
        arrays = []
        for train in (True, False):
            dataset = self._dataset(train, False)
            x = torch.from_numpy(np.ascontiguousarray(dataset.data)).permute(0, 3, 1, 2).float().div_(255)
            arrays += [x, torch.tensor(dataset.targets, dtype=torch.int64)]
        return tuple(arrays)
