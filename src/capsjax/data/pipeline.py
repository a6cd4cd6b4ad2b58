"""Host-side batching: the seeded order of an epoch, train and eval batches, and prefetching to devices."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

import numpy as np

from capsjax.data.dataset import ArrayDataset


def epoch_permutation(num_examples: int, *, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of an epoch, a pure function of (seed, epoch) so a resumed run repeats it."""
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def train_batches(
    dataset: ArrayDataset, *, batch_size: int, seed: int, epoch: int, start: int = 0, rows: slice = slice(None)
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffled full batches of one epoch, from batch index ``start`` (drops the remainder).

    ``rows``: the part of every batch to yield (a process of a distributed run reads only its
    rows of each global batch; the batches themselves depend on ``(seed, epoch)`` alone).

    Yields:
      ``(images [batch, h, w, c] uint8, labels [batch] int32)``, plus ``targets`` if the dataset has them.
    """
    order = epoch_permutation(len(dataset), seed=seed, epoch=epoch)
    for k in range(start, len(dataset) // batch_size):
        idx = np.sort(order[k * batch_size : (k + 1) * batch_size])
        yield dataset.arrays(idx[rows])


def eval_batches(
    dataset: ArrayDataset, *, batch_size: int, rows: slice = slice(None)
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Batches in order, the last one padded; yields ``(images, labels, valid [batch] bool)``, each
    restricted to ``rows`` of the batch (so processes that split each batch count every image once)."""
    for start in range(0, len(dataset), batch_size):
        images = dataset.images[start : start + batch_size]
        labels = dataset.labels[start : start + batch_size]
        valid = np.ones(len(labels), bool)
        pad = batch_size - len(labels)
        if pad:
            images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
            labels = np.concatenate([labels, np.zeros((pad,) + labels.shape[1:], labels.dtype)])
            valid = np.concatenate([valid, np.zeros(pad, bool)])
        yield images[rows], labels[rows], valid[rows]


def prefetch(iterator: Iterator, put: Callable, *, size: int = 2) -> Iterator:
    """Run ``put`` (e.g. ``jax.device_put``) on items in a background thread, ``size`` ahead."""
    if size <= 0:
        yield from (put(item) for item in iterator)
        return
    items: queue.Queue = queue.Queue(maxsize=size)
    done = object()

    def producer():
        try:
            for item in iterator:
                items.put(put(item))
        except BaseException as err:  # re-raised in the consumer
            items.put(err)
        items.put(done)

    threading.Thread(target=producer, daemon=True).start()
    while (item := items.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item
