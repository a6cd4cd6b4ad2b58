"""smallNORB's binary matrices (``*-dat.mat``, ``*-cat.mat``, ``*-info.mat``, optionally gzipped).

Each file is an int32 magic number (the element type), a rank, at least three dimensions, then the
data. The header is checked against the limits of :mod:`capsjax.data.idx` before anything is read.
"""

from __future__ import annotations

import gzip
import math
import pathlib
import zlib
from typing import BinaryIO

import numpy as np

from capsjax.data import idx
from capsjax.data.format_errors import DataFormatError

_NORB_TYPES = {0x1E3D4C55: np.uint8, 0x1E3D4C54: np.int32}


def read_norb_matrix(path: pathlib.Path) -> np.ndarray:
    """One smallNORB binary matrix (``.mat``, optionally gzipped): int32 magic, rank, dims, data.

    The header is checked before the data is read, and gzip data is decompressed only up to the size
    the header declares.
    """
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
            dims, dtype = _norb_header(path, stream)
            expected = math.prod(dims) * dtype.itemsize
            data = stream.read(expected)
            found = len(data) + len(stream.read(1))
    except (OSError, EOFError, zlib.error) as err:
        raise DataFormatError(f"{path}: corrupt gzip data or unreadable ({err})") from None
    if found != expected:
        what = "trailing data" if found > expected else f"{found} data bytes"
        raise DataFormatError(f"{path}: {what}, the header says {expected}")
    return np.frombuffer(data, dtype).reshape(dims)


def _norb_header(path: pathlib.Path, stream: BinaryIO) -> tuple[tuple[int, ...], np.dtype]:
    """The dimensions and dtype of a smallNORB matrix, read from ``stream``; refuses sizes above the limit."""
    start = stream.read(8)
    header = np.frombuffer(start, "<i4") if len(start) == 8 else np.zeros(0, "<i4")
    if len(header) < 2 or int(header[0]) & 0xFFFFFFFF not in _NORB_TYPES:
        raise DataFormatError(f"{path}: not a smallNORB matrix (bad magic number)")
    dtype, rank = np.dtype(_NORB_TYPES[int(header[0]) & 0xFFFFFFFF]).newbyteorder("<"), int(header[1])
    if not 1 <= rank <= 6:
        raise DataFormatError(f"{path}: bad rank {rank}")
    dims_count = max(3, rank)  # the format stores at least 3 dimensions
    stored = stream.read(4 * dims_count)
    if len(stored) < 4 * dims_count:
        raise DataFormatError(f"{path}: truncated header ({rank} dimensions declared)")
    dims = tuple(int(d) for d in np.frombuffer(stored, "<i4")[:rank])
    nbytes = math.prod(dims) * dtype.itemsize
    if min(dims) < 0 or nbytes > idx.MAX_ARRAY_BYTES:
        raise DataFormatError(
            f"{path}: the header declares shape {dims} ({nbytes} bytes); dimensions must be >= 0 and the data at "
            f"most {idx.MAX_ARRAY_BYTES} bytes (the machine's memory): the file is corrupt"
        )
    return dims, dtype


# smallNORB's info matrix [n, 4]: each column's name and largest stored value.
_NORB_INFO = (("instance", 9), ("elevation", 8), ("azimuth", 34), ("lighting", 5))


def read_norb_factors(path: pathlib.Path, count: int) -> dict[str, np.ndarray]:
    """Each image's ``instance`` (0..9), ``elevation`` (degrees: 30 + 5 x the stored 0..8), ``azimuth``
    (degrees: 10 x the stored 0, 2, ..., 34) and ``lighting`` (0..5) from a smallNORB ``*-info.mat``.

    Raises:
      DataFormatError: not ``[count, 4]``, or a value out of its range, naming the file.
    """
    info = read_norb_matrix(path).astype(np.int32)
    if info.shape != (count, 4):
        raise DataFormatError(
            f"{path}: expected [{count}, 4] (instance, elevation, azimuth, lighting), got {info.shape}"
        )
    for column, (name, largest) in enumerate(_NORB_INFO):
        if not np.all((info[:, column] >= 0) & (info[:, column] <= largest)) or (
            name == "azimuth" and np.any(info[:, 2] % 2)
        ):
            raise DataFormatError(
                f"{path}: {name} values outside 0..{largest}" + (", even" if name == "azimuth" else "")
            )
    return {
        "instance": info[:, 0],
        "elevation": 30 + 5 * info[:, 1],
        "azimuth": 10 * info[:, 2],
        "lighting": info[:, 3],
    }
