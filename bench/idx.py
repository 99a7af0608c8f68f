"""The IDX file format of MNIST and Fashion-MNIST (LeCun et al.): one reader for every element type, gzip or not,
and the four files of a data set read as uint8 image tensors N x 1 x H x W and int64 labels."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from bench.errors import DataError

__all__ = ["IDX_FILES", "read_idx", "idx_files_in", "read_idx_set"]


_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed or not) into a native-endian numpy array.

    Raises :class:`DataError` naming the file when it is not gzip/IDX, or is truncated.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path} is a corrupt or truncated gzip file ({exc}); replace it") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES or data[3] == 0:
        magic = data[:4].hex() or "none"
        raise DataError(f"{path} is not an IDX file (bad magic number {magic}); replace it")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is truncated (header cut short); replace it")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    count = int(np.prod(shape, dtype=np.int64))
    expected = header + count * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(f"{path} is {what} ({len(data)} bytes, expected {expected}); replace it")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)  # writable, native byte order


IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def idx_files_in(folder: Path) -> list[Path] | None:
    """The four IDX files in ``folder`` (``.gz`` preferred, uncompressed accepted), or None if any lacks."""
    found = []
    for base in IDX_FILES:
        for cand in (folder / f"{base}.gz", folder / base):
            if cand.is_file():
                found.append(cand)
                break
        else:
            return None
    return found


def read_idx_set(files: list[Path]) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_test, y_test) from the four IDX files: images N x 1 x H x W, labels int64."""
    out: list[torch.Tensor] = []
    for i in (0, 2):
        img_path, lab_path = files[i], files[i + 1]
        images, labels = read_idx(img_path), read_idx(lab_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataError(f"{img_path} holds {images.dtype} of shape {images.shape}, not N x H x W bytes")
        if labels.ndim != 1:
            raise DataError(f"{lab_path} holds an array of shape {labels.shape}, not N labels")
        if len(labels) != len(images):
            raise DataError(f"{lab_path} has {len(labels)} labels for the {len(images)} images of {img_path}")
        out += [torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))]
    return tuple(out)
