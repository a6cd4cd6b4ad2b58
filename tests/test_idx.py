import gzip

import numpy as np
import pytest

from capsjax.data.idx import IDXError, read_idx, write_idx


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_round_trip(tmp_path, name):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / name, array)
    np.testing.assert_array_equal(read_idx(tmp_path / name), array)


def _valid_bytes():
    return bytes([0, 0, 8, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes(range(6))


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"", "bad magic number"),
        (b"\x01\x02\x08\x01" + bytes(8), "bad magic number"),
        (bytes([0, 0, 0x42, 1]) + bytes(8), "unknown IDX type code 0x42"),
        (bytes([0, 0, 8, 3]) + bytes(4), "truncated IDX header"),
        (_valid_bytes()[:-1], "truncated"),
        (_valid_bytes() + b"\x00", "trailing data"),
    ],
)
def test_corrupt_files_name_the_file(tmp_path, payload, message):
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(payload)
    with pytest.raises(IDXError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_gzip(tmp_path):
    path = tmp_path / "x-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(_valid_bytes())[:-6])
    with pytest.raises(IDXError, match="corrupt or truncated gzip"):
        read_idx(path)
