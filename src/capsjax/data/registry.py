"""Datasets by name: the one place that knows every name a config's ``data.name`` may hold."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

from capsjax.data.canvas import place_on_canvas
from capsjax.data.dataset import ArrayDataset
from capsjax.data.multimnist import load_multimnist
from capsjax.data.sources import IDX_DATASETS, load_dataset


def _load_idx(name: str, split: str, *, data_dir=None, num_examples: int | None = None) -> ArrayDataset:
    return load_dataset(name, split, data_dir=data_dir).take(num_examples)


DATASETS: dict[str, Callable[..., ArrayDataset]] = {
    **{name: functools.partial(_load_idx, name) for name in IDX_DATASETS},
    "multimnist": load_multimnist,
}
"""Loaders by name, each called as ``loader(split, *, data_dir, num_examples) -> ArrayDataset``."""


def load_split(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    num_examples: int | None = None,
    canvas: int = 0,
) -> ArrayDataset:
    """One split of a named dataset: its first ``num_examples`` images (all if None), centred on a
    ``canvas x canvas`` background if ``canvas`` > 0.

    Raises:
      ValueError: an unknown name or split.
      DataNotFoundError: no source has the data (see :func:`capsjax.data.sources.load_dataset`).
    """
    if name not in DATASETS:
        raise ValueError(f"dataset: unknown name {name!r}; choose one of {sorted(DATASETS)}")
    dataset = DATASETS[name](split, data_dir=data_dir, num_examples=num_examples)
    if not canvas:
        return dataset
    if dataset.targets is not None:
        raise ValueError(f"canvas: {name} has per-object targets, which are not placed on a canvas; use canvas=0")
    return ArrayDataset(place_on_canvas(dataset.images, canvas), dataset.labels, dataset.source)
