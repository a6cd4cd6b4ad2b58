"""Where the named IDX datasets (MNIST, Fashion-MNIST, KMNIST) come from: folders or tensorflow-datasets.

``load_dataset(name, split, data_dir=DIR)`` with a data folder reads that folder only: ``DIR`` itself
(the folder holding the four files, unless it is named for another dataset) or ``DIR/<name>/``
(also spelled with a dash, ``DIR/fashion-mnist/``). A folder that does not exist or holds none of
the split's files is a :class:`DataNotFoundError` naming it: never a silent fallback to other data.

Without a data folder (``data_dir=None``), the lookup order is:

1. ``$CAPSJAX_DATA_DIR`` (the folder holding the four files or its parent with a ``<name>/``
   sub-folder), then the download cache ``~/.cache/capsjax/datasets/<name>/``, then the system folder
   ``/usr/share/datasets/<name>/`` (where Debian's ``dataset-fashion-mnist`` installs).
2. A download from the public mirrors, checksummed, into ``$CAPSJAX_DATA_DIR/<name>/`` or the
   download cache (:mod:`capsjax.data.download`; ``CAPSJAX_DATASET_MIRROR=URL`` for a mirror of your own).
3. tensorflow-datasets (``pip install 'capsjax[tfds]'``), only if it is installed and its cache
   already holds the dataset or the network answers within 3 seconds.

When nothing works, one :class:`DataNotFoundError` lists every place tried. There is no fallback
to other or synthetic data. :func:`load_cifar10` follows the same rule.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import socket

import numpy as np

from capsjax.data.dataset import ArrayDataset
from capsjax.data.download import DATA_DIR_ENV, DEFAULT_CACHE, DownloadError, default_cache, fetch_dataset
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


def _layouts(name: str, root: pathlib.Path) -> list[pathlib.Path]:
    """The folders under ``root`` that may hold ``name``'s files: ``root/<name>``, and ``root`` itself
    unless it is named for another dataset (``.../mnist`` never stands in for fashion_mnist)."""
    other_names = {n for d in IDX_DATASETS if d != name for n in (d, d.replace("_", "-"))}
    folders = [root / name, root / name.replace("_", "-")]
    if root.name not in other_names:
        folders.append(root)
    return list(dict.fromkeys(folders))


def _candidate_dirs(name: str) -> list[pathlib.Path]:
    """Where ``name`` is looked for without a data folder: ``$CAPSJAX_DATA_DIR``, the cache, the system folder."""
    environment = os.environ.get(DATA_DIR_ENV)
    folders = _layouts(name, pathlib.Path(environment)) if environment else []
    cache = default_cache(DEFAULT_CACHE)
    if cache is not None:
        folders.append(cache / name)
    folders += [SYSTEM_DIR / name, SYSTEM_DIR / name.replace("_", "-")]
    return list(dict.fromkeys(folders))


def _from_data_dir(name: str, split: str, data_dir: str | os.PathLike) -> ArrayDataset:
    """``split`` of ``name`` from the data folder given, and nowhere else."""
    root = pathlib.Path(data_dir)
    if not str(data_dir) or not root.is_dir():
        raise DataNotFoundError(
            f"{root if str(data_dir) else repr('')}: the {name} data folder given (--data-dir) does not exist; "
            f"give the folder holding {' and '.join(IDX_FILES[split])}[.gz], or leave it out to use "
            f"${DATA_DIR_ENV}, the download cache or a download"
        )
    for folder in _layouts(name, root):
        if folder.is_dir() and _find_file(folder, IDX_FILES[split][0]):
            return load_idx_split(folder, split)
    layouts = _layouts(name, root)
    looked = ", ".join(str(f) for f in layouts) + ("" if root in layouts else f"; {root.name}/ is another dataset's")
    raise DataNotFoundError(
        f"{root}: holds no {name} {split} files (looked in {looked} for {IDX_FILES[split][0]}[.gz]); "
        "give the folder that holds them (--data-dir), or leave it out to use the download cache or a download"
    )


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

    Args:
      data_dir: the folder to read (or its parent with a ``<name>/`` sub-folder), and only it; None:
        ``$CAPSJAX_DATA_DIR``, the cache, the system folder, a download, tensorflow-datasets.

    Raises:
      DataNotFoundError: ``data_dir`` does not exist or holds none of the split's files, or (without
        it) no source has the data; the message names the folder or lists where it looked.
      IDXError: a file was found but is corrupt, truncated, inconsistent or larger than the limits.
      DataError: the data must be downloaded but there is no usable cache folder (no home folder).
    """
    if name not in IDX_DATASETS:
        raise ValueError(f"dataset: unknown name {name!r}; choose one of {sorted(IDX_DATASETS)}")
    if split not in IDX_FILES:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    named = functools.partial(dataclasses.replace, class_names=CLASS_NAMES[name])
    if data_dir is not None:
        return named(_from_data_dir(name, split, data_dir))
    tried = []
    for folder in _candidate_dirs(name):
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
    """CIFAR-10 (python format) from ``data_dir`` alone if given (the ``cifar-10-batches-py`` folder, or a
    parent holding it or ``cifar10/cifar-10-batches-py``); else from ``$CAPSJAX_DATA_DIR`` (same layouts),
    the download cache, or a download (:mod:`capsjax.data.download`).

    Raises:
      DataNotFoundError: ``data_dir`` does not exist or holds no CIFAR-10 batches, or (without it)
        nothing has them and the download failed.
    """
    from capsjax.data.file_formats import read_cifar

    def batches(root: pathlib.Path) -> pathlib.Path | None:
        for folder in (root, root / "cifar-10-batches-py", root / "cifar10" / "cifar-10-batches-py"):
            if (folder / "data_batch_1").is_file():
                return folder
        return None

    if data_dir is not None:
        folder = batches(pathlib.Path(data_dir)) if str(data_dir) else None
        if folder is None:
            state = "holds no CIFAR-10 batches (data_batch_1)" if pathlib.Path(data_dir).is_dir() else "does not exist"
            raise DataNotFoundError(
                f"{data_dir!s}: the cifar10 data folder given (--data-dir) {state}; give the cifar-10-batches-py "
                "folder or its parent, or leave it out to use the download cache or a download"
            )
        return read_cifar(folder, split)
    environment, cache = os.environ.get(DATA_DIR_ENV), default_cache(DEFAULT_CACHE)
    roots = [pathlib.Path(p) for p in (environment, cache) if p]
    for root in roots:
        if (folder := batches(root)) is not None:
            return read_cifar(folder, split)
    try:
        return read_cifar(fetch_dataset("cifar10") / "cifar-10-batches-py", split)
    except DownloadError as err:
        looked = ", ".join(str(r) for r in roots)
        raise DataNotFoundError(f"could not find cifar10 (looked in {looked}); download: {err}") from None
