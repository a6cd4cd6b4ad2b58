"""Readers for image datasets stored as files: image folders, ``.npz``, CIFAR, SVHN and smallNORB.

Each reader returns one split as an :class:`~capsjax.data.dataset.ArrayDataset` (uint8 images
``[n, height, width, channels]``, int32 labels ``[n]``) and validates what it reads: shapes, dtypes,
label ranges, empty class folders, unreadable images. Every problem is one
:class:`DataFormatError` naming the file. :func:`detect_format` tells the formats apart by path.

Formats:

- ``image_folder``: ``PATH/train/<class>/*`` and ``PATH/test/<class>/*`` (PNG, JPEG, anything PIL
  reads), or only ``PATH/<class>/*``, split by a seeded test fraction; classes sorted by name,
  label = position; every image of a dataset must have the same size (grayscale images give 1
  channel, colour ones 3).
- ``npz``: a ``.npz`` file with ``x_train, y_train, x_test, y_test`` (the ``keras.datasets``
  layout), uint8 images ``[n, h, w]`` or ``[n, h, w, c]``.
- ``cifar``: a ``cifar-10-batches-py`` (``data_batch_1..5``, ``test_batch``) or ``cifar-100-python``
  (``train``, ``test``; fine labels) folder of pickled batches, read with an unpickler that
  accepts only the NumPy array types those files hold.
- ``svhn``: a folder with ``train_32x32.mat`` and ``test_32x32.mat`` (label 10 is the digit 0).
- ``smallnorb``: a folder with the six ``smallnorb-*-{dat,cat,info}.mat`` binary matrices
  (``5x46789x9x18x6x2x96x96-training-dat.mat`` and the like); the left camera's 96x96 image.

Limits, checked from headers before anything is decoded or allocated (each a :class:`DataFormatError`
naming the file):

- an image may have at most :data:`MAX_IMAGE_PIXELS` pixels (2**24, e.g. 4096x4096), read from its
  header (PIL's decompression-bomb errors and warnings are refused the same way); an image folder's
  images must all have one size, and together fit in :data:`capsjax.data.idx.MAX_ARRAY_BYTES`;
- each array of a ``.npz`` file is checked from its ``.npy`` header first: its declared shape and dtype
  must need exactly the bytes the zip member holds, and at most ``MAX_ARRAY_BYTES``;
- a smallNORB matrix's header is read first (dimensions >= 0, at most ``MAX_ARRAY_BYTES``) and a gzip
  file is decompressed only up to that size;
- labels read without a fixed class count (``.npz``) must be below :data:`MAX_CLASSES`.

The image folders (and the image header checks) live in :mod:`capsjax.data.image_folders`, the error
in :mod:`capsjax.data.format_errors`; this module re-exports their public names.
"""

from __future__ import annotations

import math
import pathlib
import pickle
import zipfile
import zlib

import numpy as np

from capsjax.data import idx
from capsjax.data.dataset import ArrayDataset
from capsjax.data.format_errors import DataFormatError
from capsjax.data.image_folders import (
    IMAGE_SUFFIXES,
    MAX_IMAGE_PIXELS,
    class_folders,
    decode_image,
    open_image,
    read_image_folder,
)
from capsjax.data.norb_files import read_norb_factors, read_norb_matrix
from capsjax.errors import DataNotFoundError

# Every public name, those of the image folders included (the API reference documents them here), in
# the order of the reference.
__all__ = [
    "IMAGE_SUFFIXES",
    "FORMATS",
    "CIFAR10_CLASSES",
    "SMALLNORB_CLASSES",
    "MAX_IMAGE_PIXELS",
    "MAX_CLASSES",
    "DataFormatError",
    "detect_format",
    "read_split",
    "class_folders",
    "open_image",
    "decode_image",
    "read_image_folder",
    "read_npz",
    "check_npz_member",
    "read_cifar",
    "read_svhn",
    "read_norb_matrix",
    "read_norb_factors",
    "read_smallnorb",
]

FORMATS = ("image_folder", "npz", "cifar", "svhn", "smallnorb")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SMALLNORB_CLASSES = ("animal", "human", "airplane", "truck", "car")
MAX_CLASSES = 10_000  # labels 0..9999: a larger label is a corrupt file, not a class count to size a model by


def detect_format(path: str | pathlib.Path) -> str:
    """The format of ``path`` (one of :data:`FORMATS`), from file names alone.

    Raises:
      DataNotFoundError: ``path`` does not exist (a ``FileNotFoundError``).
      DataFormatError: it exists but is none of the formats.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise DataNotFoundError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix == ".npz":
            return "npz"
        raise DataFormatError(f"{path}: a file of an unknown format (a .npz file or a folder is expected)")
    names = {p.name for p in path.iterdir()}
    if "data_batch_1" in names or {"train", "test", "meta"} <= names:
        return "cifar"
    if "train_32x32.mat" in names or "test_32x32.mat" in names:
        return "svhn"
    if any(name.startswith("smallnorb-") or name.endswith("-dat.mat") for name in names):
        return "smallnorb"
    if any(p.is_dir() for p in path.iterdir()):
        return "image_folder"
    raise DataFormatError(
        f"{path}: not a dataset folder (expected class sub-folders, train/ and test/, CIFAR batches, "
        "SVHN or smallNORB .mat files)"
    )


def read_split(path: str | pathlib.Path, split: str, *, test_fraction: float = 0.1, seed: int = 0) -> ArrayDataset:
    """One split (``"train"`` or ``"test"``) of the dataset at ``path``, in its detected format."""
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    path = pathlib.Path(path)
    fmt = detect_format(path)
    if fmt == "image_folder":
        return read_image_folder(path, split, test_fraction=test_fraction, seed=seed)
    return {"npz": read_npz, "cifar": read_cifar, "svhn": read_svhn, "smallnorb": read_smallnorb}[fmt](path, split)


# --- .npz (keras.datasets layout) ----------------------------------------------------------------


def _checked_images(images: np.ndarray, where: str) -> np.ndarray:
    if images.dtype != np.uint8:
        raise DataFormatError(f"{where}: expected uint8 images, got {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4) or 0 in images.shape:
        raise DataFormatError(f"{where}: expected images [n, h, w] or [n, h, w, 1|3|4], got shape {images.shape}")
    return images


def _checked_labels(labels: np.ndarray, n: int, where: str, num_classes: int | None = None) -> np.ndarray:
    labels = np.asarray(labels).reshape(-1) if np.ndim(labels) == 2 and np.shape(labels)[1] == 1 else labels
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataFormatError(f"{where}: expected integer labels [n], got {labels.dtype} {labels.shape}")
    if len(labels) != n:
        raise DataFormatError(f"{where}: {n} images but {len(labels)} labels")
    if labels.size and labels.min() < 0:
        raise DataFormatError(f"{where}: negative label {labels.min()}")
    limit = MAX_CLASSES if num_classes is None else num_classes
    if labels.size and labels.max() >= limit:
        raise DataFormatError(f"{where}: label {labels.max()} out of range 0..{limit - 1}")
    return labels.astype(np.int32)


def read_npz(path: pathlib.Path, split: str) -> ArrayDataset:
    """``x_<split>`` and ``y_<split>`` of a ``.npz`` file (no pickled objects are loaded).

    Each array's ``.npy`` header is checked first (:func:`check_npz_member`): a header that declares
    more bytes than its member holds, or than the machine's memory, is refused before it is read.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = {name.removesuffix(".npy"): name for name in archive.namelist()}
            missing = {f"x_{split}", f"y_{split}"} - set(members)
            if missing:
                raise DataFormatError(f"{path}: missing {sorted(missing)} (has {sorted(members)})")
            for key in (f"x_{split}", f"y_{split}"):
                check_npz_member(path, archive, members[key])
        with np.load(path, allow_pickle=False) as archive:
            images, labels = archive[f"x_{split}"], archive[f"y_{split}"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        if isinstance(err, DataFormatError):
            raise
        raise DataFormatError(f"{path}: not a readable .npz file ({err})") from None
    images = _checked_images(images, f"{path} x_{split}")
    return ArrayDataset(images, _checked_labels(labels, len(images), f"{path} y_{split}"), str(path))


def check_npz_member(path: pathlib.Path, archive: zipfile.ZipFile, name: str) -> None:
    """Read the ``.npy`` header of ``archive``'s member ``name`` and check it before the array is loaded.

    Raises:
      DataFormatError: the header is not a ``.npy`` header, declares an object array, or a shape whose
        bytes differ from what the member holds or exceed :data:`capsjax.data.idx.MAX_ARRAY_BYTES`.
    """
    info = archive.getinfo(name)
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(member)  # version 3.0 differs from 2.0 only in the header's text encoding
        offset = member.tell()
    if dtype.hasobject:
        raise DataFormatError(f"{path} {name}: an array of Python objects ({dtype}); only numeric arrays are read")
    nbytes, held = math.prod(shape) * dtype.itemsize, info.file_size - offset
    if nbytes > idx.MAX_ARRAY_BYTES or nbytes != held:
        problem = (
            f"more than the limit of {idx.MAX_ARRAY_BYTES} (the machine's memory)"
            if nbytes > idx.MAX_ARRAY_BYTES
            else f"but the member holds {held}; the file is corrupt, write it again"
        )
        raise DataFormatError(f"{path} {name}: the header declares shape {shape} of {dtype} ({nbytes} bytes) {problem}")


# --- CIFAR-10 / CIFAR-100 python batches --------------------------------------------------------


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and NumPy arrays only: nothing that runs code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(path: pathlib.Path) -> dict:
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as err:
        raise DataFormatError(f"{path}: not a CIFAR python batch ({err})") from None
    if not isinstance(batch, dict):
        raise DataFormatError(f"{path}: not a CIFAR python batch (a {type(batch).__name__}, not a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def read_cifar(folder: pathlib.Path, split: str) -> ArrayDataset:
    """CIFAR-10 (``data_batch_1..5`` / ``test_batch``) or CIFAR-100 (``train`` / ``test``, fine labels)."""
    cifar10 = (folder / "data_batch_1").exists() or (folder / "test_batch").exists()
    if cifar10:
        files = [folder / f"data_batch_{k}" for k in range(1, 6)] if split == "train" else [folder / "test_batch"]
        key, num_classes = "labels", 10
    else:
        files, key, num_classes = [folder / split], "fine_labels", 100
    images, labels = [], []
    for path in files:
        if not path.is_file():
            raise DataFormatError(f"{path}: missing CIFAR batch")
        batch = _unpickle(path)
        if "data" not in batch or key not in batch:
            raise DataFormatError(f"{path}: expected the keys 'data' and {key!r}, got {sorted(batch)}")
        data = np.asarray(batch["data"])
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DataFormatError(f"{path}: expected uint8 data [n, 3072], got {data.dtype} {data.shape}")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(_checked_labels(np.asarray(batch[key]), len(data), str(path), num_classes))
    names = CIFAR10_CLASSES if cifar10 else _cifar100_names(folder)
    return ArrayDataset(np.concatenate(images), np.concatenate(labels), str(folder), class_names=names)


def _cifar100_names(folder: pathlib.Path) -> tuple[str, ...] | None:
    """The 100 fine label names from CIFAR-100's ``meta`` file (None if it has none)."""
    meta = folder / "meta"
    names = _unpickle(meta).get("fine_label_names") if meta.is_file() else None
    if not isinstance(names, list) or len(names) != 100:
        return None
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


# --- SVHN (cropped digits, MATLAB files) ---------------------------------------------------------


def read_svhn(folder: pathlib.Path, split: str) -> ArrayDataset:
    """``<split>_32x32.mat``: ``X [32, 32, 3, n]`` uint8 and ``y [n, 1]`` in 1..10 (10 is the digit 0)."""
    from scipy.io import loadmat  # scipy is a dependency; imported here to keep `import capsjax` light

    path = folder / f"{split}_32x32.mat"
    if not path.is_file():
        raise DataFormatError(f"{path}: missing SVHN file")
    try:
        mat = loadmat(path)
    except (OSError, ValueError, NotImplementedError) as err:
        raise DataFormatError(f"{path}: not a readable MATLAB file ({err})") from None
    if "X" not in mat or "y" not in mat:
        raise DataFormatError(f"{path}: expected the variables X and y")
    images = np.asarray(mat["X"])
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise DataFormatError(f"{path}: expected uint8 X [32, 32, 3, n], got {images.dtype} {images.shape}")
    labels = np.asarray(mat["y"]).reshape(-1)
    if labels.size and (labels.min() < 1 or labels.max() > 10):
        raise DataFormatError(f"{path}: labels must be within 1..10, got {labels.min()}..{labels.max()}")
    labels = np.where(labels == 10, 0, labels)
    images = images.transpose(3, 0, 1, 2)
    labels = _checked_labels(labels, len(images), str(path), 10)
    return ArrayDataset(np.ascontiguousarray(images), labels, str(folder), class_names=tuple(str(k) for k in range(10)))


# --- smallNORB (binary matrix files) -------------------------------------------------------------


def _norb_file(folder: pathlib.Path, split: str, kind: str) -> pathlib.Path:
    tag = "training" if split == "train" else "testing"
    matches = sorted(p for p in folder.iterdir() if tag in p.name and f"-{kind}.mat" in p.name)
    if not matches:
        raise DataFormatError(f"{folder}: missing the smallNORB {tag} {kind} file (*{tag}-{kind}.mat[.gz])")
    return matches[0]


def read_smallnorb(folder: pathlib.Path, split: str) -> ArrayDataset:
    """The left camera's 96x96 images ``[n, 96, 96, 1]``, categories 0..4 and, where the folder holds the
    split's ``*-info.mat``, each image's viewpoint (:func:`read_norb_factors`) of one smallNORB split."""
    dat_path, cat_path = _norb_file(folder, split, "dat"), _norb_file(folder, split, "cat")
    images = read_norb_matrix(dat_path)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 2:
        raise DataFormatError(
            f"{dat_path}: expected uint8 [n, 2, h, w] stereo pairs, got {images.dtype} {images.shape}"
        )
    labels = read_norb_matrix(cat_path)
    tag = "training" if split == "train" else "testing"
    info = sorted(p for p in folder.iterdir() if tag in p.name and "-info.mat" in p.name)
    return ArrayDataset(
        np.ascontiguousarray(images[:, 0, :, :, None]),
        _checked_labels(labels, len(images), str(cat_path), 5),
        str(folder),
        class_names=SMALLNORB_CLASSES,
        factors=read_norb_factors(info[0], len(images)) if info else None,
    )
