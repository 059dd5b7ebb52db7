"""smallNORB (LeCun et al. 2004) from the official binary files, preprocessed as in the matrix-capsule paper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from datamodules.base import ArrayDataModule, DataError, InMemoryDataset
from datamodules.batch_transforms import brightness_contrast, centre_crop, per_image_standardise, random_crop
from datamodules.norb import find_matrix, read_matrix

SPLIT_PREFIXES = {
    "training": "smallnorb-5x46789x9x18x6x2x96x96-training",
    "testing": "smallnorb-5x01235x9x18x6x2x96x96-testing",
}
SYSTEM_DIRS = ("/usr/share/datasets/smallnorb",)
_CHUNK = 2048  # images resized at a time, to bound the float copy of the 96×96 originals


def resize_images(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 images to float ``size``×``size`` by area averaging (exact 2×2 means for 96 → 48).

    Shape:
        - images: ``(N, C, H, W)`` uint8
        - output: ``(N, C, size, size)`` float32 in [0, 255]
    """
    out = torch.empty(len(images), images.shape[1], size, size)
    for start in range(0, len(images), _CHUNK):
        chunk = torch.from_numpy(images[start : start + _CHUNK]).float()
        out[start : start + len(chunk)] = F.interpolate(chunk, size=(size, size), mode="area")
    return out


class SmallNORBDataModule(ArrayDataModule):
    """Grey images of 50 toys in 5 categories; 24,300 training and 24,300 test stereo pairs, 96×96.

    Preprocessing, as in Hinton, Sabour and Frosst (2018): images are downsampled to
    ``image_size`` (48), standardised per image, then cropped to ``crop_size`` (32): a random
    window with random brightness and contrast for training batches, the centre for validation
    and test. Resizing and standardising happen once at load time; the random crop and jitter
    are applied to each training batch on its device (:meth:`on_after_batch_transfer`), so
    they cost no worker processes. Validation and test images are stored already centre-cropped.

    The official files are ``smallnorb-5x46789x9x18x6x2x96x96-training-{dat,cat,info}.mat`` and
    ``smallnorb-5x01235x9x18x6x2x96x96-testing-{dat,cat,info}.mat`` (plain or ``.gz``); ``dat``
    and ``cat`` are required, ``info`` is checked when present. The validation split is drawn
    from the training set, whose toy instances differ from the test set's, so validation
    accuracy overstates test accuracy.

    Args:
        batch_size: samples per batch on each device.
        num_workers: DataLoader worker processes.
        val_fraction: share of the training pairs held out for validation.
        seed: fixes the validation split and the shuffling order.
        data_dir: folder holding the files; default ``./data/smallnorb``, then /usr/share/datasets/smallnorb.
        stereo: use both images of each pair as two channels instead of the left one only.
        image_size: side after downsampling.
        crop_size: side of the crops the model sees.
        brightness: maximum brightness shift, in units of the (standardised) image's std.
        contrast: range of the random contrast factor.
    """

    num_classes = 5
    class_names = ("animal", "human", "airplane", "truck", "car")

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        data_dir: str | None = None,
        stereo: bool = False,
        image_size: int = 48,
        crop_size: int = 32,
        brightness: float = 0.25,
        contrast: tuple[float, float] = (0.5, 1.5),
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed)
        if not 0 < crop_size <= image_size:
            raise ValueError(f"crop_size must lie in 1..image_size ({image_size}), got {crop_size}")
        if not 0 <= contrast[0] <= contrast[1]:
            raise ValueError(f"contrast must be a range (low, high) with 0 <= low <= high, got {tuple(contrast)}")
        self.data_dir = data_dir
        self.stereo = stereo
        self.image_size, self.crop_size = image_size, crop_size
        self.brightness, self.contrast = brightness, tuple(contrast)
        self.input_shape = (2 if stereo else 1, crop_size, crop_size)

    def stored_shape(self) -> tuple[int, ...]:
        return (self.input_shape[0], self.image_size, self.image_size)

    def search_dirs(self) -> list[Path]:
        """An explicit ``data_dir`` is the only place looked in; otherwise ./data/smallnorb and the system folder."""
        if self.data_dir:
            return [Path(self.data_dir)]
        return [Path("data") / "smallnorb", *(Path(d) for d in SYSTEM_DIRS)]

    def locate(self) -> Path:
        """The first searched folder with the four required files; a :class:`DataError` listing them if none."""
        required = [f"{prefix}-{kind}.mat" for prefix in SPLIT_PREFIXES.values() for kind in ("dat", "cat")]
        for directory in self.search_dirs():
            if all(find_matrix(directory, name) for name in required):
                return directory
        first = self.search_dirs()[0]
        missing = [name for name in required if not find_matrix(first, name)]
        raise DataError(
            f"smallNORB files not found: {first} lacks {', '.join(missing)} (plain or .gz); "
            f"looked in: {', '.join(str(d) for d in self.search_dirs())}. Download them from "
            "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/ and pass --data.data_dir DIR."
        )

    def read_split(self, directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Images ``(N, 2, H, W)`` uint8 and categories ``(N,)`` of one split, checked against each other."""
        prefix = SPLIT_PREFIXES[split]
        dat_path, cat_path = (find_matrix(directory, f"{prefix}-{kind}.mat") for kind in ("dat", "cat"))
        images = read_matrix(dat_path)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 2:
            raise DataError(
                f"{dat_path}: expected uint8 stereo images of shape (N, 2, H, W), "
                f"got {images.dtype} of shape {images.shape}"
            )
        labels = read_matrix(cat_path)
        if labels.dtype != np.int32 or labels.shape != (len(images),):
            raise DataError(
                f"{cat_path}: expected {len(images)} int32 categories (one per image in {dat_path.name}), "
                f"got {labels.dtype} of shape {labels.shape}"
            )
        if labels.size and not (0 <= labels.min() and labels.max() < self.num_classes):
            raise DataError(
                f"{cat_path}: categories must lie in 0..{self.num_classes - 1}, found {labels.min()}..{labels.max()}"
            )
        info_path = find_matrix(directory, f"{prefix}-info.mat")
        if info_path is not None:
            info = read_matrix(info_path)
            if info.ndim != 2 or info.shape[0] != len(images):
                raise DataError(f"{info_path}: expected ({len(images)}, 4) int32 rows, got shape {info.shape}")
        return images, labels

    def load_arrays(self):
        directory = self.locate()
        arrays = []
        for split in SPLIT_PREFIXES:
            images, labels = self.read_split(directory, split)
            channels = images if self.stereo else images[:, :1]
            x = per_image_standardise(resize_images(channels, self.image_size))
            arrays += [x, torch.from_numpy(labels.astype(np.int64))]
        return tuple(arrays)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        super().setup(stage)
        for name in ("val_set", "test_set"):
            images, labels = getattr(self, name).tensors
            setattr(self, name, InMemoryDataset(centre_crop(images, self.crop_size).contiguous(), labels))

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Random crop and jitter for training batches: those still at the stored size."""
        images, labels = batch
        if images.shape[-1] == self.crop_size:
            return batch
        crops = random_crop(images, self.crop_size)
        return brightness_contrast(crops, self.brightness, self.contrast), labels
