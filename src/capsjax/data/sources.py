"""Where the named IDX datasets (MNIST, Fashion-MNIST, KMNIST) come from: folders or tensorflow-datasets.

Lookup order for ``load_dataset(name, split, data_dir=...)``:

1. ``data_dir`` (``--data-dir``), then ``$CAPSJAX_DATA_DIR`` (either may be the folder holding the
   four files or its parent with a ``<name>/`` sub-folder), then the download cache
   ``~/.cache/capsjax/datasets/<name>/``, then the system folder ``/usr/share/datasets/<name>/``
   (where Debian's ``dataset-fashion-mnist`` installs).
2. A download from the public mirrors, checksummed, into ``$CAPSJAX_DATA_DIR/<name>/`` or the
   download cache (:mod:`capsjax.data.download`; ``CAPSJAX_DATASET_MIRROR=URL`` for a mirror of your own).
3. tensorflow-datasets (``pip install 'capsjax[tfds]'``), only if it is installed and its cache
   already holds the dataset or the network answers within 3 seconds.

When nothing works, one :class:`DataNotFoundError` lists every place tried. There is no fallback
to other or synthetic data.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import socket

import numpy as np

from capsjax.data.dataset import ArrayDataset
from capsjax.data.download import DEFAULT_CACHE, DownloadError, fetch_dataset
from capsjax.data.idx import IDXError, read_idx
from capsjax.errors import DataNotFoundError

# Same IDX file names for all three datasets.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_DATASETS = ("mnist", "fashion_mnist", "kmnist")
DIGITS = tuple(str(k) for k in range(10))
CLASS_NAMES = {  # label k is CLASS_NAMES[name][k]
    "mnist": DIGITS,
    "fashion_mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
}
SYSTEM_DIR = pathlib.Path("/usr/share/datasets")


def _find_file(folder: pathlib.Path, stem: str) -> pathlib.Path | None:
    # Accept the usual spellings: "-idx3-ubyte" or ".idx3-ubyte", gzip or raw.
    for name in (stem, stem.replace("-idx", ".idx")):
        for suffix in (".gz", ""):
            candidate = folder / (name + suffix)
            if candidate.is_file():
                return candidate
    return None


def _candidate_dirs(name: str, data_dir: str | os.PathLike | None) -> list[pathlib.Path]:
    roots = [pathlib.Path(p) for p in (data_dir, os.environ.get("CAPSJAX_DATA_DIR")) if p]
    folders = []
    other_names = {n for d in IDX_DATASETS if d != name for n in (d, d.replace("_", "-"))}
    for root in roots:
        folders += [root / name, root / name.replace("_", "-")]
        # A folder named after another dataset (e.g. .../mnist when fashion_mnist is asked for)
        # never stands in for this one.
        if root.name not in other_names:
            folders.append(root)
    folders.append(DEFAULT_CACHE.expanduser() / name)
    folders += [SYSTEM_DIR / name, SYSTEM_DIR / name.replace("_", "-")]
    return list(dict.fromkeys(folders))


def load_idx_split(folder: pathlib.Path, split: str) -> ArrayDataset:
    """Load one split from a folder of IDX files; check that images and labels agree."""
    image_path, label_path = (_find_file(folder, stem) for stem in IDX_FILES[split])
    if image_path is None or label_path is None:
        raise DataNotFoundError(f"{folder}: missing {' or '.join(IDX_FILES[split])}")
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise IDXError(f"{image_path}: expected uint8 images [n, height, width], got {images.dtype} {images.shape}")
    if labels.ndim != 1:
        raise IDXError(f"{label_path}: expected labels [n], got shape {labels.shape}")
    if len(images) != len(labels):
        raise IDXError(f"{image_path} has {len(images)} images but {label_path} has {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise IDXError(f"{label_path}: label {labels.max()} out of range 0..9")
    return ArrayDataset(images[..., None], labels.astype(np.int32), str(folder))


def _online(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _load_tfds(name: str, split: str) -> ArrayDataset:
    import tensorflow_datasets as tfds  # optional extra: capsjax[tfds]

    builder = tfds.builder(name)
    if not builder.is_prepared():
        if not _online():
            raise DataNotFoundError(f"tfds: {name} is not in the tfds cache and the network is unreachable")
        builder.download_and_prepare()
    arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    return ArrayDataset(arrays["image"].astype(np.uint8), arrays["label"].astype(np.int32), f"tfds:{name}")


def load_dataset(name: str, split: str, *, data_dir: str | os.PathLike | None = None) -> ArrayDataset:
    """Load ``split`` (``"train"`` or ``"test"``) of ``name`` (mnist, fashion_mnist, kmnist).

    Raises:
      DataNotFoundError: no source has the data; the message lists where it looked.
      IDXError: a file was found but is corrupt, truncated or inconsistent.
    """
    if name not in IDX_DATASETS:
        raise ValueError(f"dataset: unknown name {name!r}; choose one of {sorted(IDX_DATASETS)}")
    if split not in IDX_FILES:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    tried = []
    named = functools.partial(dataclasses.replace, class_names=CLASS_NAMES[name])
    for folder in _candidate_dirs(name, data_dir):
        if folder.is_dir() and _find_file(folder, IDX_FILES[split][0]):
            return named(load_idx_split(folder, split))
        tried.append(f"  - {folder}: {'no IDX files' if folder.is_dir() else 'not found'}")
    try:
        return named(load_idx_split(fetch_dataset(name), split))
    except DownloadError as err:
        tried.append("  - download: " + str(err).replace("\n", "\n    "))
    try:
        return _load_tfds(name, split)
    except ImportError:
        tried.append("  - tensorflow-datasets: not installed (pip install 'capsjax[tfds]')")
    except DataNotFoundError as err:
        tried.append(f"  - {err}")
    raise DataNotFoundError(
        f"could not find the {name} {split} split. Looked in:\n" + "\n".join(tried) + "\n"
        "Provide the four IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
        "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) with --data-dir DIR or "
        "CAPSJAX_DATA_DIR=DIR, or go online (they are downloaded on first use)."
    )


def load_cifar10(split: str, *, data_dir: str | os.PathLike | None = None) -> ArrayDataset:
    """CIFAR-10 (python format) from ``data_dir`` / ``$CAPSJAX_DATA_DIR`` (the ``cifar-10-batches-py``
    folder, or a parent holding it or ``cifar10/cifar-10-batches-py``), the download cache, or else a
    download (:mod:`capsjax.data.download`)."""
    from capsjax.data.file_formats import read_cifar

    roots = [pathlib.Path(p) for p in (data_dir, os.environ.get("CAPSJAX_DATA_DIR")) if p]
    roots.append(DEFAULT_CACHE.expanduser())
    for root in roots:
        for folder in (root, root / "cifar-10-batches-py", root / "cifar10" / "cifar-10-batches-py"):
            if (folder / "data_batch_1").is_file():
                return read_cifar(folder, split)
    try:
        return read_cifar(fetch_dataset("cifar10") / "cifar-10-batches-py", split)
    except DownloadError as err:
        looked = ", ".join(str(r) for r in roots)
        raise DataNotFoundError(f"could not find cifar10 (looked in {looked}); download: {err}") from None
