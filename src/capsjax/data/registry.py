"""Datasets by name: the one place that knows every name a config's ``data.name`` may hold."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable

from capsjax.data.canvas import centre_crop, place_on_canvas, resize_images
from capsjax.data.dataset import ArrayDataset
from capsjax.data.file_formats import read_split
from capsjax.data.multimnist import load_multimnist
from capsjax.data.sources import IDX_DATASETS, load_cifar10, load_dataset
from capsjax.data.viewpoints import load_viewpoints


def _load_idx(name: str, split: str, *, data_dir=None, num_examples: int | None = None) -> ArrayDataset:
    return load_dataset(name, split, data_dir=data_dir).take(num_examples)


DATASETS: dict[str, Callable[..., ArrayDataset]] = {
    **{name: functools.partial(_load_idx, name) for name in IDX_DATASETS},
    "multimnist": load_multimnist,
    "viewpoints": load_viewpoints,
    "cifar10": lambda split, *, data_dir=None, num_examples=None: load_cifar10(split, data_dir=data_dir).take(
        num_examples
    ),
}
"""Loaders by name, each called as ``loader(split, *, data_dir, num_examples) -> ArrayDataset``."""


def load_split(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    num_examples: int | None = None,
    canvas: int = 0,
    path: str | os.PathLike | None = None,
    test_fraction: float = 0.1,
    seed: int = 0,
    resize: int = 0,
    crop: int = 0,
) -> ArrayDataset:
    """One split of a named dataset, or of the dataset in files at ``path``: its first
    ``num_examples`` images (all if None), centred on a ``canvas x canvas`` background if ``canvas`` > 0,
    resized to ``resize x resize`` if ``resize`` > 0, and for the test split cut to their central
    ``crop x crop`` window if ``crop`` > 0 (training crops at random, on device).

    ``data_dir``, when given, is the only folder a named dataset is read from (its files, or a
    ``<name>/`` sub-folder holding them); None looks in ``$CAPSJAX_DATA_DIR``, the cache, and downloads.
    ``test_fraction`` and ``seed`` split files at ``path`` that hold no test split; named datasets do not
    use them (a generated one's own seed is its loader's, e.g. ``load_viewpoints(split, seed=1)``).

    Raises:
      ValueError: an unknown name or split.
      DataNotFoundError: ``data_dir`` does not exist or holds no data, or (without it) no source has
        the data (see :func:`capsjax.data.sources.load_dataset`).
      DataFormatError: ``path`` holds unreadable data (see :mod:`capsjax.data.file_formats`).
    """
    if path is not None:
        dataset = read_split(path, split, test_fraction=test_fraction, seed=seed).take(num_examples)
    elif name not in DATASETS:
        raise ValueError(f"dataset: unknown name {name!r}; choose one of {sorted(DATASETS)}")
    else:
        dataset = DATASETS[name](split, data_dir=data_dir, num_examples=num_examples)
    if resize:
        dataset = dataclasses.replace(dataset, images=resize_images(dataset.images, resize))
    if crop and split == "test":
        dataset = dataclasses.replace(dataset, images=centre_crop(dataset.images, crop))
    if not canvas:
        return dataset
    if dataset.targets is not None:
        raise ValueError(f"canvas: {name} has per-object targets, which are not placed on a canvas; use canvas=0")
    return dataclasses.replace(dataset, images=place_on_canvas(dataset.images, canvas))
