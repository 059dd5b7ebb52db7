"""Reader for the binary matrix files of NORB and smallNORB, with errors that name the broken file.

Format (little-endian): an int32 magic number giving the element type, an int32 number of
dimensions ``ndim``, then ``max(3, ndim)`` int32 sizes (of which the first ``ndim`` count), then
the elements in row-major order. smallNORB's ``-dat`` files are ``(N, 2, 96, 96)`` uint8 stereo
pairs, ``-cat`` files ``(N,)`` int32 categories, ``-info`` files ``(N, 4)`` int32 (instance,
elevation, azimuth, lighting).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from datamodules.base import DataError

MAGIC_DTYPES = {
    0x1E3D4C55: np.dtype("u1"),  # byte matrix
    0x1E3D4C54: np.dtype("<i4"),  # integer matrix
    0x1E3D4C56: np.dtype("<i2"),  # short matrix
    0x1E3D4C51: np.dtype("<f4"),  # single-precision matrix
    0x1E3D4C53: np.dtype("<f8"),  # double-precision matrix
}
MAGIC_BY_DTYPE = {dtype: magic for magic, dtype in MAGIC_DTYPES.items()}
_MAX_NDIM = 16


def find_matrix(directory: Path, name: str) -> Path | None:
    """``directory/name`` or ``directory/name.gz``, whichever exists."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_exact(stream, size: int, path: Path, what: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise DataError(f"{path}: truncated {what}: expected {size} bytes, found {len(data)}")
    return data


def read_matrix(path: Path) -> np.ndarray:
    """Read a NORB binary matrix (optionally gzip-compressed) into an array of its declared shape.

    The elements are read straight into the result, so a 450 MB ``-dat`` file needs no second
    copy in memory. Raises :class:`DataError` naming ``path`` for a bad magic number, a bad
    header, or a body shorter or longer than the header says.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as stream:
            magic, ndim = np.frombuffer(_read_exact(stream, 8, path, "header"), dtype="<i4").tolist()
            if magic & 0xFFFFFFFF not in MAGIC_DTYPES:
                known = ", ".join(f"0x{m:08X} ({d})" for m, d in MAGIC_DTYPES.items())
                raise DataError(
                    f"{path}: not a NORB matrix file: magic number 0x{magic & 0xFFFFFFFF:08X}, expected one of {known}"
                )
            if not 0 < ndim <= _MAX_NDIM:
                raise DataError(f"{path}: bad header: {ndim} dimensions (expected 1 to {_MAX_NDIM})")
            sizes = np.frombuffer(_read_exact(stream, 4 * max(3, ndim), path, "header"), dtype="<i4")
            shape = tuple(int(s) for s in sizes[:ndim])
            if any(s < 0 for s in shape):
                raise DataError(f"{path}: bad header: negative size in {shape}")
            dtype = MAGIC_DTYPES[magic & 0xFFFFFFFF]
            array = np.empty(shape, dtype=dtype)
            expected = array.nbytes
            got = stream.readinto(memoryview(array).cast("B")) if expected else 0
            while got < expected:  # gzip streams may return short reads
                more = stream.readinto(memoryview(array).cast("B")[got:])
                if not more:
                    break
                got += more
            if got != expected:
                raise DataError(f"{path}: truncated: header {shape} {dtype} needs {expected} data bytes, found {got}")
            if stream.read(1):
                raise DataError(f"{path}: longer than its header {shape} {dtype} says ({expected} data bytes)")
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: cannot be read or decompressed ({err}); the file is corrupt or truncated") from err
    return array


def write_matrix(path: Path, array: np.ndarray) -> None:
    """Write ``array`` in the NORB format (gzip-compressed if ``path`` ends in ``.gz``).

    Used to make small files in tests; the inverse of :func:`read_matrix`.
    """
    dtype = np.dtype(array.dtype).newbyteorder("<") if array.dtype.itemsize > 1 else np.dtype(array.dtype)
    if dtype not in MAGIC_BY_DTYPE:
        raise ValueError(f"NORB files hold uint8, int16, int32, float32 or float64, not {array.dtype}")
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
    header = np.array([MAGIC_BY_DTYPE[dtype], array.ndim, *dims], dtype="<u4").astype("<i4").tobytes()
    body = np.ascontiguousarray(array, dtype=dtype).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as stream:
        stream.write(header + body)
