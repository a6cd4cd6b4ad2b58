"""Reader for the IDX format of MNIST, Fashion-MNIST and KMNIST (gzip or raw), with validation.

The format: 2 zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, then one
big-endian uint32 per dimension, then the data in C order. Every deviation is an :class:`IDXError`
that names the file; nothing reaches numpy unchecked.

Limits: the header is read first, and a header whose shape needs more than :data:`MAX_ARRAY_BYTES`
(the machine's physical memory; 8 GiB where it is unknown) is refused before anything is allocated;
a raw file's size must match its header before its data is read, and a gzip file is decompressed
only up to the size its header declares (a small file that inflates to gigabytes is refused).
"""

from __future__ import annotations

import gzip
import math
import os
import pathlib
import zlib
from typing import BinaryIO

import numpy as np

from capsjax.errors import DataError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 8 << 30


MAX_ARRAY_BYTES = _physical_memory()
"""The most bytes one array read from a data file may declare (IDX, ``.npz``, smallNORB), checked
before it is allocated: more than the machine's memory is a corrupt or hostile header."""


class IDXError(DataError):
    """A file that is not a valid IDX file (corrupt, truncated, unexpected or larger than the limits)."""


def read_idx(path: str | pathlib.Path) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw) into a numpy array with the file's dimensions.

    Raises:
      IDXError: bad magic number, unknown type code, a length that does not match the header, or a
        header that declares more than :data:`MAX_ARRAY_BYTES`.
    """
    path = pathlib.Path(path)
    compressed = False
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
            dims, dtype, offset = _read_header(path, stream)
            nbytes = math.prod(dims) * dtype.itemsize
            if not compressed:
                _check_length(path, dims, offset + nbytes, os.fstat(raw.fileno()).st_size)
            data = stream.read(nbytes)
            _check_length(path, dims, offset + nbytes, offset + len(data) + len(stream.read(1)))
    except (OSError, EOFError, zlib.error) as err:
        if not compressed:
            raise IDXError(f"{path}: cannot read ({err})") from None
        raise IDXError(f"{path}: corrupt or truncated gzip data ({err})") from None
    return np.frombuffer(data, dtype).reshape(dims).astype(dtype.newbyteorder("="))


def _read_header(path: pathlib.Path, stream: BinaryIO) -> tuple[tuple[int, ...], np.dtype, int]:
    """The dimensions, dtype and header length of an IDX stream; refuses shapes above the limit."""
    magic = stream.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
        raise IDXError(f"{path}: not an IDX file (bad magic number {magic.hex() or 'empty'})")
    type_code, ndim = magic[2], magic[3]
    if type_code not in _DTYPES:
        raise IDXError(f"{path}: unknown IDX type code 0x{type_code:02x}")
    header = stream.read(4 * ndim)
    if ndim < 1 or len(header) < 4 * ndim:
        raise IDXError(f"{path}: truncated IDX header ({ndim} dimensions declared)")
    dims = tuple(int.from_bytes(header[4 * k : 4 + 4 * k], "big") for k in range(ndim))
    dtype = np.dtype(_DTYPES[type_code])
    nbytes = math.prod(dims) * dtype.itemsize
    if nbytes > MAX_ARRAY_BYTES:
        raise IDXError(
            f"{path}: the header declares shape {dims} ({nbytes} bytes), more than the limit of {MAX_ARRAY_BYTES} "
            "bytes (the machine's memory); the file is corrupt or not an IDX file"
        )
    return dims, dtype, 4 + 4 * ndim


def _check_length(path: pathlib.Path, dims: tuple[int, ...], expected: int, actual: int) -> None:
    """``actual`` (bytes in the file, or read plus one more) must be the ``expected`` header + data length."""
    if actual != expected:
        raise IDXError(
            f"{path}: {actual} bytes but the header {dims} needs {expected} "
            f"({'truncated' if actual < expected else 'trailing data'})"
        )


def write_idx(path: str | pathlib.Path, array: np.ndarray, *, compress: bool | None = None) -> None:
    """Write a uint8 array as an IDX file (gzip if ``compress`` or the name ends in ``.gz``)."""
    path = pathlib.Path(path)
    array = np.ascontiguousarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.tobytes()
    if compress or (compress is None and path.suffix == ".gz"):
        payload = gzip.compress(payload)
    path.write_bytes(payload)
