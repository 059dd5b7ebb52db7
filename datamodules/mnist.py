"""MNIST and Fashion-MNIST from the standard IDX files, found locally or downloaded by torchvision."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from datamodules.base import ArrayDataModule, DataError
from datamodules.idx import find_idx, read_idx

_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


class IDXDataModule(ArrayDataModule):
    """28×28 grey images in the four IDX files of the MNIST family.

    Looks in ``data_dir`` if given (and its torchvision layout ``<dir>/<Dataset>/raw``), else in
    ``./data/<name>`` and the system directories in ``system_dirs``. With
    ``download=True`` and a network, torchvision fetches the files into ``data_dir``.

    Args:
        data_dir: folder holding the IDX files (``.gz`` or not).
        download: let torchvision download the files when none are found.
    """

    input_shape = (1, 28, 28)
    num_classes = 10
    system_dirs: tuple[str, ...] = ()
    torchvision_name = ""
    obtain_hint = ""

    def __init__(
        self,
        batch_size: int = 128,
        num_workers: int = 0,
        val_fraction: float = 1 / 12,
        seed: int = 0,
        shift: int = 0,
        data_dir: str | None = None,
        download: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, shift)
        self.data_dir = data_dir
        self.download = download

    def search_dirs(self) -> list[Path]:
        """An explicit ``data_dir`` is the only place looked in; otherwise ./data and the system folders."""
        root = Path(self.data_dir) if self.data_dir else Path("data") / self.name
        dirs = [root, root / self.torchvision_name / "raw"]
        return dirs if self.data_dir else dirs + [Path(d) for d in self.system_dirs]

    def locate(self) -> Path | None:
        """The first searched directory holding all four files."""
        for directory in self.search_dirs():
            if all(find_idx(directory, stem) for stem in _FILES.values()):
                return directory
        return None

    def prepare_data(self) -> None:
        if self.locate() is not None or not self.download:
            return
        import torchvision

        root = self.data_dir or str(Path("data") / self.name)
        try:
            getattr(torchvision.datasets, self.torchvision_name)(root, train=True, download=True)
            getattr(torchvision.datasets, self.torchvision_name)(root, train=False, download=True)
        except Exception as err:  # torchvision raises URLError, RuntimeError, ... when offline
            raise DataError(
                f"downloading {self.torchvision_name} into {root} failed ({err}); {self.obtain_hint}"
            ) from err

    def load_arrays(self):
        directory = self.locate()
        if directory is None:
            looked = ", ".join(str(d) for d in self.search_dirs())
            raise DataError(
                f"{self.torchvision_name} IDX files ({', '.join(_FILES.values())}[.gz]) not found; "
                f"looked in: {looked}. "
                f"{self.obtain_hint} Or pass --data.data_dir DIR, or --data.download true with a network."
            )
        arrays = {key: read_idx(find_idx(directory, stem)) for key, stem in _FILES.items()}
        for split in ("train", "test"):
            if len(arrays[f"x_{split}"]) != len(arrays[f"y_{split}"]):
                raise DataError(f"{directory}: {split} images and labels differ in count")
        x_train, x_test = (
            torch.from_numpy(arrays[k].copy()).float().div_(255).unsqueeze(1) for k in ("x_train", "x_test")
        )
        y_train, y_test = (torch.from_numpy(arrays[k].astype("int64")) for k in ("y_train", "y_test"))
        return x_train, y_train, x_test, y_test


class MNISTDataModule(IDXDataModule):
    """MNIST handwritten digits (60,000 + 10,000)."""

    class_names = tuple(str(d) for d in range(10))
    system_dirs = ("/usr/share/datasets/mnist",)
    torchvision_name = "MNIST"
    obtain_hint = "Put the four MNIST IDX files in that folder."


class FashionMNISTDataModule(IDXDataModule):
    """Zalando's Fashion-MNIST (60,000 + 10,000), found under /usr/share/datasets/fashion-mnist on Debian."""

    class_names = ("T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot")
    system_dirs = (os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"),)
    torchvision_name = "FashionMNIST"
    obtain_hint = "On Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist."

    @property
    def name(self) -> str:
        return "fashion_mnist"
