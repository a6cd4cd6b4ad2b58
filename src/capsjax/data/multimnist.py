"""MultiMNIST (Sabour et al. 2017, sec. 6): two overlapping digits of different classes on a 36x36
canvas, each shifted by up to 4 pixels, combined by pixel-wise maximum.

Generated deterministically from (seed, split) out of the MNIST split of the same name (training
pairs from training digits, test pairs from test digits) and saved once as ``.npz`` in the cache
folder (``$CAPSJAX_CACHE_DIR``, default ``~/.cache/capsjax``), then reused.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from capsjax.data.canvas import place_on_canvas
from capsjax.data.dataset import ArrayDataset
from capsjax.data.sources import load_dataset

CANVAS = 36
MAX_SHIFT = 4
DEFAULT_COUNTS = {"train": 60000, "test": 10000}


def make_multimnist(
    mnist: ArrayDataset, *, num_examples: int, seed: int = 0, max_shift: int = MAX_SHIFT
) -> ArrayDataset:
    """Pairs of digits of different classes, overlaid by pixel-wise maximum.

    Returns an :class:`ArrayDataset` with images ``[n, 36, 36, c]``, labels ``[n, 2]`` and targets
    ``[n, 2, 36, 36, c]`` (each shifted digit alone).
    """
    rng = np.random.default_rng(seed)
    n_source = len(mnist)
    sources = np.zeros((num_examples, 2), int)
    offsets = np.zeros((num_examples, 2, 2), int)
    for k in range(num_examples):
        first = k % n_source
        second = int(rng.integers(n_source))
        while mnist.labels[second] == mnist.labels[first]:
            second = int(rng.integers(n_source))
        sources[k] = first, second
        for slot in range(2):
            offsets[k, slot] = rng.integers(-max_shift, max_shift + 1, size=2)
    digits = mnist.images[sources.reshape(-1)]
    targets = place_on_canvas(digits, CANVAS, offsets.reshape(-1, 2)).reshape(num_examples, 2, CANVAS, CANVAS, -1)
    images = np.maximum(targets[:, 0], targets[:, 1])
    labels = mnist.labels[sources].astype(np.int32)
    return ArrayDataset(images, labels, f"multimnist(seed={seed})", targets)


def cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("CAPSJAX_CACHE_DIR", pathlib.Path.home() / ".cache" / "capsjax"))


def load_multimnist(split: str, *, data_dir=None, num_examples: int | None = None, seed: int = 0) -> ArrayDataset:
    """The MultiMNIST split, generated on first use and then read from the cache."""
    count = num_examples or DEFAULT_COUNTS[split]
    path = cache_dir() / f"multimnist_{split}_{count}_seed{seed}.npz"
    if path.exists():
        with np.load(path) as f:
            return ArrayDataset(f["images"], f["labels"], str(path), f["targets"])
    split_seed = seed * 2 + (split == "test")
    data = make_multimnist(load_dataset("mnist", split, data_dir=data_dir), num_examples=count, seed=split_seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, images=data.images, labels=data.labels, targets=data.targets)
    tmp.replace(path)  # atomic: a crash never leaves a half-written cache file
    return ArrayDataset(data.images, data.labels, str(path), data.targets)
