"""smallNORB: the binary reader, the data module's preprocessing, and its errors, on tiny fake files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST, train

from datamodules.base import DataError
from datamodules.batch_transforms import brightness_contrast, centre_crop, per_image_standardise, random_crop
from datamodules.norb import read_matrix, write_matrix
from datamodules.smallnorb import SPLIT_PREFIXES, SmallNORBDataModule

SIZES = {"training": 12, "testing": 8}


def write_fake_smallnorb(directory: Path, gz: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
    """Official file names and format, a few random 96×96 stereo pairs per split; returns the categories."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    suffix = ".gz" if gz else ""
    categories = {}
    for split, n in SIZES.items():
        prefix = SPLIT_PREFIXES[split]
        images = rng.integers(0, 256, size=(n, 2, 96, 96), dtype=np.uint8)
        categories[split] = (np.arange(n) % 5).astype(np.int32)
        info = rng.integers(0, 10, size=(n, 4)).astype(np.int32)
        write_matrix(directory / f"{prefix}-dat.mat{suffix}", images)
        write_matrix(directory / f"{prefix}-cat.mat{suffix}", categories[split])
        write_matrix(directory / f"{prefix}-info.mat{suffix}", info)
    return categories


def test_reader_follows_the_official_header(tmp_path):
    path = tmp_path / "cat.mat"
    write_matrix(path, np.array([3, 1, 4], dtype=np.int32))
    raw = path.read_bytes()
    header = np.frombuffer(raw[:20], dtype="<i4")
    # magic 0x1E3D4C54 (int32 matrix), ndim 1, then max(3, ndim) = 3 sizes
    assert header.tolist() == [0x1E3D4C54, 1, 3, 1, 1] and len(raw) == 20 + 12
    assert read_matrix(path).tolist() == [3, 1, 4]
    images = np.arange(2 * 2 * 3 * 3, dtype=np.uint8).reshape(2, 2, 3, 3)
    write_matrix(tmp_path / "dat.mat.gz", images)
    assert gzip.decompress((tmp_path / "dat.mat.gz").read_bytes())[:4] == (0x1E3D4C55).to_bytes(4, "little")
    np.testing.assert_array_equal(read_matrix(tmp_path / "dat.mat.gz"), images)


@pytest.mark.parametrize("gz", [False, True])
def test_data_module_shapes_labels_and_standardisation(tmp_path, gz):
    categories = write_fake_smallnorb(tmp_path / "norb", gz=gz)
    dm = SmallNORBDataModule(data_dir=str(tmp_path / "norb"), batch_size=4, val_fraction=0.25)
    dm.setup("fit")
    assert dm.input_shape == (1, 32, 32) and dm.num_classes == 5 and len(dm.class_names) == 5
    train_x, train_y = dm.train_set.tensors
    val_x, val_y = dm.val_set.tensors
    test_x, test_y = dm.test_set.tensors
    assert train_x.shape == (9, 1, 48, 48) and val_x.shape == (3, 1, 32, 32) and test_x.shape == (8, 1, 32, 32)
    assert sorted(torch.cat([train_y, val_y]).tolist()) == sorted(categories["training"].tolist())
    assert test_y.tolist() == categories["testing"].tolist()
    # per-image standardisation of the 48×48 images
    torch.testing.assert_close(train_x.mean(dim=(1, 2, 3)), torch.zeros(9), atol=1e-5, rtol=0)
    torch.testing.assert_close(train_x.std(dim=(1, 2, 3), unbiased=False), torch.ones(9), atol=1e-4, rtol=0)
    # a training batch is cropped at random and jittered on the device; evaluation batches pass through
    batch = next(iter(dm.train_dataloader()))
    crops, labels = dm.on_after_batch_transfer(batch, 0)
    assert crops.shape == (4, 1, 32, 32) and torch.equal(labels, batch[1])
    test_batch = next(iter(dm.test_dataloader()))
    assert dm.on_after_batch_transfer(test_batch, 0)[0] is test_batch[0]


def test_left_image_is_the_first_of_the_pair_and_stereo_keeps_both(tmp_path):
    write_fake_smallnorb(tmp_path)
    raw = read_matrix(tmp_path / f"{SPLIT_PREFIXES['testing']}-dat.mat")
    mono = SmallNORBDataModule(data_dir=str(tmp_path))
    stereo = SmallNORBDataModule(data_dir=str(tmp_path), stereo=True)
    mono.setup(), stereo.setup()
    assert stereo.input_shape == (2, 32, 32) and stereo.test_set.tensors[0].shape == (8, 2, 32, 32)
    # 96 → 48 is an exact 2×2 mean, then standardisation, then the centre 32×32
    expected = per_image_standardise(
        torch.from_numpy(raw[:, :1]).float().unflatten(2, (48, 2)).unflatten(4, (48, 2)).mean((3, 5))
    )
    torch.testing.assert_close(mono.test_set.tensors[0], centre_crop(expected, 32), atol=1e-5, rtol=0)


def test_random_crops_are_windows_and_jitter_is_affine_per_image():
    torch.manual_seed(0)
    images = torch.randn(6, 2, 9, 9)
    crops = random_crop(images, 4)
    for image, crop in zip(images, crops):  # a slow check of every possible window
        windows = [image[:, y : y + 4, x : x + 4] for y in range(6) for x in range(6)]
        assert any(torch.equal(crop, w) for w in windows)
    jittered = brightness_contrast(images, 0.5, (0.5, 1.5))
    for image, out in zip(images, jittered):
        slope, intercept = np.polyfit(image.flatten().numpy(), out.flatten().numpy(), 1)
        assert 0.5 <= slope <= 1.5
        torch.testing.assert_close(out, image * slope + intercept, atol=1e-4, rtol=0)
    assert torch.equal(centre_crop(images, 5), images[..., 2:7, 2:7])


def test_missing_files_are_named(tmp_path):
    with pytest.raises(DataError, match=r"smallnorb-5x46789x9x18x6x2x96x96-training-dat\.mat.*--data\.data_dir"):
        SmallNORBDataModule(data_dir=str(tmp_path)).setup()
    write_fake_smallnorb(tmp_path)
    (tmp_path / f"{SPLIT_PREFIXES['testing']}-cat.mat").unlink()
    with pytest.raises(DataError, match=r"lacks smallnorb-5x01235x9x18x6x2x96x96-testing-cat\.mat \(plain or \.gz\)"):
        SmallNORBDataModule(data_dir=str(tmp_path)).setup()


def test_malformed_files_are_named_with_what_was_expected(tmp_path):
    write_fake_smallnorb(tmp_path)
    dat = tmp_path / f"{SPLIT_PREFIXES['training']}-dat.mat"
    cat = tmp_path / f"{SPLIT_PREFIXES['training']}-cat.mat"
    good = dat.read_bytes()

    dat.write_bytes(b"\x00\x01\x02\x03" + good[4:])
    with pytest.raises(DataError, match=rf"{dat.name}: not a NORB matrix file: magic number 0x03020100.*0x1E3D4C55"):
        SmallNORBDataModule(data_dir=str(tmp_path)).setup()
    dat.write_bytes(good[:-10])
    with pytest.raises(DataError, match=rf"{dat.name}: truncated: header \(12, 2, 96, 96\)"):
        SmallNORBDataModule(data_dir=str(tmp_path)).setup()
    dat.write_bytes(good + b"\x00")
    with pytest.raises(DataError, match=rf"{dat.name}: longer than its header"):
        SmallNORBDataModule(data_dir=str(tmp_path)).setup()
    dat.write_bytes(good)

    write_matrix(cat, np.zeros(11, dtype=np.int32))
    with pytest.raises(DataError, match=rf"{cat.name}: expected 12 int32 categories.*shape \(11,\)"):
        SmallNORBDataModule(data_dir=str(tmp_path)).setup()
    write_matrix(cat, np.full(12, 7, dtype=np.int32))
    with pytest.raises(DataError, match=rf"{cat.name}: categories must lie in 0..4"):
        SmallNORBDataModule(data_dir=str(tmp_path)).setup()
    write_matrix(cat, np.zeros(12, dtype=np.int32))
    write_matrix(dat, np.zeros((12, 96, 96), dtype=np.uint8))
    with pytest.raises(DataError, match=rf"{dat.name}: expected uint8 stereo images of shape \(N, 2, H, W\)"):
        SmallNORBDataModule(data_dir=str(tmp_path)).setup()
    (tmp_path / "broken.mat.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"broken\.mat\.gz: cannot be read or decompressed"):
        read_matrix(tmp_path / "broken.mat.gz")


def test_train_py_links_smallnorb_shapes_to_the_model(tmp_path):
    write_fake_smallnorb(tmp_path / "norb")
    args = ("--model", "cnn_baseline", "--data", "smallnorb", "--data.data_dir", str(tmp_path / "norb"))
    assert train(*args, "--logger", "none", "--trainer.fast_dev_run", "true", *FAST) == 0
