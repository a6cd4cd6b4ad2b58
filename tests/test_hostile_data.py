"""Hostile data files are refused from their headers, before anything large is decoded or allocated:
decompression-bomb images (in an image folder, or given to ``capsjax predict``), ``.npz`` arrays whose
``.npy`` header lies about the shape, IDX and smallNORB headers that declare more than memory holds
(and gzip files that would inflate to it), and labels too large to size a model by."""

import gzip
import io
import re
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from capsjax.data import idx
from capsjax.data.file_formats import DataFormatError, read_norb_matrix, read_split
from capsjax.data.idx import IDXError, read_idx
from capsjax.data.image_files import read_image


def png_header(width: int, height: int) -> bytes:
    """A small PNG file that declares ``width x height`` grayscale pixels (its data is a few zero rows)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(bytes(4 * (width + 1)), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def refused(side: int) -> str:
    """The message for a ``side x side`` image: capsjax's limit, or PIL's decompression-bomb check."""
    return rf"(a {side}x{side} image \({side * side} pixels\), more than the limit|refused before decoding: .*)"


# 5000x5000 passes PIL's own checks; 10000x10000 gets its warning, 20000x20000 its error.
BOMB_SIZES = [5000, 10000, 20000]


@pytest.mark.parametrize("side", BOMB_SIZES)
def test_a_huge_image_in_an_image_folder_is_refused_from_its_header(tmp_path, side):
    for name in ("a", "b"):
        for k in range(2):
            write_png(tmp_path / name / f"{k}.png", np.zeros((8, 8), np.uint8))
    for bomb in (tmp_path / "b").iterdir():  # whichever of them the split holds
        bomb.write_bytes(png_header(side, side))
        assert bomb.stat().st_size < 100_000
    expected = rf"^{tmp_path / 'b'}/[01]\.png: {refused(side)}"
    with pytest.raises(DataFormatError, match=expected) as info:
        read_split(tmp_path, "train", test_fraction=0.5)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("side", BOMB_SIZES)
@pytest.mark.parametrize("resize", [False, True])
def test_a_huge_image_given_to_predict_is_refused(tmp_path, side, resize):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(side, side))
    with pytest.raises(DataFormatError, match=rf"^{bomb}: {refused(side)}"):
        read_image(bomb, shape=(28, 28, 1), resize=resize)


def test_predict_reads_resizes_and_names_a_wrong_size(tmp_path):
    path = tmp_path / "digit.png"
    write_png(path, np.full((56, 56), 200, np.uint8))
    with pytest.raises(DataFormatError, match=r"digit\.png: expected a 28x28 image .* got 56x56; --resize"):
        read_image(path, shape=(28, 28, 1))
    image = read_image(path, shape=(28, 28, 1), resize=True)
    assert image.shape == (28, 28, 1) and image.dtype == np.uint8 and image[5, 5, 0] == 200
    assert read_image(path, shape=(56, 56, 3)).shape == (56, 56, 3)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(DataFormatError, match=r"text\.png: not a readable image"):
        read_image(tmp_path / "text.png", shape=(28, 28, 1))


def test_an_image_folder_larger_than_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    for name in ("a", "b"):
        for k in range(2):
            write_png(tmp_path / "train" / name / f"{k}.png", np.zeros((8, 8), np.uint8))
            write_png(tmp_path / "test" / name / f"{k}.png", np.zeros((8, 8), np.uint8))
    assert len(read_split(tmp_path, "train")) == 4
    monkeypatch.setattr(idx, "MAX_ARRAY_BYTES", 4 * 64 - 1)
    with pytest.raises(DataFormatError, match=r"4 images of 8x8x1 need 256 bytes, more than the limit of 255"):
        read_split(tmp_path, "train")


def lying_npz(path, shape, *, data: bytes = bytes(16)) -> None:
    """An .npz whose ``x_train.npy`` header declares uint8 ``shape`` over ``data``; ``y_train`` is honest."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": shape})
    labels = io.BytesIO()
    np.save(labels, np.zeros(2, np.int64))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x_train.npy", header.getvalue() + data)
        archive.writestr("y_train.npy", labels.getvalue())


@pytest.mark.parametrize("shape", [(10**7, 1000, 1000), (2, 4, 4000), (2, 3, 2)])
def test_an_npz_whose_header_lies_about_the_shape_is_refused(tmp_path, shape):
    path = tmp_path / "lying.npz"
    lying_npz(path, shape)
    expected = rf"^{path} x_train\.npy: the header declares shape {re.escape(str(shape))}"
    with pytest.raises(DataFormatError, match=expected) as info:
        read_split(path, "train")
    assert "\n" not in str(info.value)
    lying_npz(path, (2, 4, 2))  # 16 bytes: honest
    assert read_split(path, "train").images.shape == (2, 4, 2, 1)


def test_an_npz_larger_than_memory_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "big.npz"
    np.savez_compressed(path, x_train=np.zeros((4, 32, 32), np.uint8), y_train=np.arange(4))
    assert len(read_split(path, "train")) == 4
    monkeypatch.setattr(idx, "MAX_ARRAY_BYTES", 4 * 32 * 32 - 1)
    with pytest.raises(DataFormatError, match=r"x_train\.npy: the header declares shape \(4, 32, 32\)"):
        read_split(path, "train")


def test_npz_labels_too_large_to_size_a_model_by_are_refused(tmp_path):
    path = tmp_path / "labels.npz"
    np.savez(path, x_train=np.zeros((2, 4, 4), np.uint8), y_train=np.array([0, 10**9]))
    with pytest.raises(DataFormatError, match=r"y_train: label 1000000000 out of range 0\.\.9999"):
        read_split(path, "train")


def idx_bytes(dims: tuple[int, ...], data: bytes = b"") -> bytes:
    return bytes([0, 0, 0x08, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + data


@pytest.mark.parametrize("compress", [False, True])
def test_an_idx_header_larger_than_memory_is_refused_before_reading(tmp_path, compress):
    path = tmp_path / "huge-idx3-ubyte"
    payload = idx_bytes((2**31, 2**31, 2**31), bytes(64))
    path.write_bytes(gzip.compress(payload) if compress else payload)
    with pytest.raises(IDXError, match=rf"^{path}: the header declares shape \(2147483648, 2147483648, 2147483648\)"):
        read_idx(path)


def test_an_idx_gzip_bomb_is_refused_before_it_is_inflated(tmp_path, monkeypatch):
    """8 MB of zeros gzip to 8 kB: with a limit below 8 MB, the header alone refuses the file."""
    path = tmp_path / "bomb-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes((8192, 32, 32), bytes(8192 * 32 * 32))))
    assert path.stat().st_size < 50_000 and read_idx(path).shape == (8192, 32, 32)
    monkeypatch.setattr(idx, "MAX_ARRAY_BYTES", 1 << 20)
    with pytest.raises(IDXError, match=r"declares shape \(8192, 32, 32\) \(8388608 bytes\), more than the limit"):
        read_idx(path)


def test_a_smallnorb_gzip_bomb_is_refused_before_it_is_inflated(tmp_path, monkeypatch):
    path = tmp_path / "smallnorb-training-dat.mat.gz"
    header = np.array([0x1E3D4C55, 4, 1024, 2, 64, 64], "<i4").tobytes()
    path.write_bytes(gzip.compress(header + bytes(1024 * 2 * 64 * 64)))
    assert read_norb_matrix(path).shape == (1024, 2, 64, 64)
    monkeypatch.setattr(idx, "MAX_ARRAY_BYTES", 1 << 20)
    with pytest.raises(DataFormatError, match=r"declares shape \(1024, 2, 64, 64\) \(8388608 bytes\)"):
        read_norb_matrix(path)
    negative = tmp_path / "negative-dat.mat"
    negative.write_bytes(np.array([0x1E3D4C55, 3, -1, 4, 4], "<i4").tobytes() + bytes(16))
    with pytest.raises(DataFormatError, match="dimensions must be >= 0"):
        read_norb_matrix(negative)
