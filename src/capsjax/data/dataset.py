"""A dataset held in host memory: uint8 images and integer labels (and per-object targets, per-image factors)."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
    """Images ``[n, height, width, channels]`` uint8 and labels ``[n]`` int32, held in host memory.

    Multi-object data (MultiMNIST) has labels ``[n, objects]`` and ``targets [n, objects, height,
    width, 1]``: each object alone, what the decoder must reconstruct from that object's capsule.

    Generated data may name the factors each image was made from, ``factors[name]`` ``[n]`` int (the
    viewpoints dataset: instance, azimuth, elevation, lighting); selecting examples selects them too.
    """

    images: np.ndarray
    labels: np.ndarray
    source: str
    targets: np.ndarray | None = None
    class_names: tuple[str, ...] | None = None  # label k is class_names[k] (image folders: folder names)
    factors: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, n: int | None) -> ArrayDataset:
        """The first ``n`` examples (all if None)."""
        if n is None or n >= len(self):
            return self
        return self.select(slice(n))

    def select(self, idx) -> ArrayDataset:
        """The examples ``idx`` (a slice, or an index array ``[m]``), with their targets and factors."""
        targets = None if self.targets is None else self.targets[idx]
        factors = None if self.factors is None else {name: values[idx] for name, values in self.factors.items()}
        return dataclasses.replace(
            self, images=self.images[idx], labels=self.labels[idx], targets=targets, factors=factors
        )

    def arrays(self, idx) -> tuple[np.ndarray, ...]:
        """``(images, labels)`` or ``(images, labels, targets)`` of the examples ``idx``."""
        if self.targets is None:
            return self.images[idx], self.labels[idx]
        return self.images[idx], self.labels[idx], self.targets[idx]
