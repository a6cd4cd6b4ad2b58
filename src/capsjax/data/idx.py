"""Reader for the IDX format of MNIST, Fashion-MNIST and KMNIST (gzip or raw), with validation.

The format: 2 zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, then one
big-endian uint32 per dimension, then the data in C order. Every deviation is an :class:`IDXError`
that names the file; nothing reaches numpy unchecked.
"""

from __future__ import annotations

import gzip
import math
import pathlib
import zlib

import numpy as np

from capsjax.errors import DataError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IDXError(DataError):
    """A file that is not a valid IDX file (corrupt, truncated or unexpected)."""


def _read_bytes(path: pathlib.Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise IDXError(f"{path}: corrupt or truncated gzip data ({err})") from None


def read_idx(path: str | pathlib.Path) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw) into a numpy array with the file's dimensions.

    Raises:
      IDXError: bad magic number, unknown type code, or a length that does not match the header.
    """
    path = pathlib.Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise IDXError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    type_code, ndim = data[2], data[3]
    if type_code not in _DTYPES:
        raise IDXError(f"{path}: unknown IDX type code 0x{type_code:02x}")
    if ndim < 1 or len(data) < 4 + 4 * ndim:
        raise IDXError(f"{path}: truncated IDX header ({ndim} dimensions declared)")
    dims = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    dtype = np.dtype(_DTYPES[type_code])
    expected = 4 + 4 * ndim + math.prod(dims) * dtype.itemsize
    if len(data) != expected:
        raise IDXError(
            f"{path}: {len(data)} bytes but the header {dims} needs {expected} "
            f"({'truncated' if len(data) < expected else 'trailing data'})"
        )
    return np.frombuffer(data, dtype, offset=4 + 4 * ndim).reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path: str | pathlib.Path, array: np.ndarray, *, compress: bool | None = None) -> None:
    """Write a uint8 array as an IDX file (gzip if ``compress`` or the name ends in ``.gz``)."""
    path = pathlib.Path(path)
    array = np.ascontiguousarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.tobytes()
    if compress or (compress is None and path.suffix == ".gz"):
        payload = gzip.compress(payload)
    path.write_bytes(payload)
