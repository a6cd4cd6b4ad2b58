"""Where arrays live: the batch axis split over every local device with a ``jax.sharding.Mesh``.

The same code runs on 1 CPU, 8 GPUs or a TPU slice.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


@dataclasses.dataclass(frozen=True)
class Sharding:
    """Where arrays live: a 1-D mesh over all local devices; batches split on ``"data"``."""

    mesh: Mesh

    @classmethod
    def over_local_devices(cls) -> Sharding:
        return cls(Mesh(np.array(jax.local_devices()), ("data",)))

    @property
    def num_devices(self) -> int:
        return self.mesh.devices.size

    def batch(self, tree):
        """Split the leading (batch) axis of every leaf over the devices."""
        return jax.device_put(tree, NamedSharding(self.mesh, PartitionSpec("data")))

    def replicated(self, tree):
        return jax.device_put(tree, NamedSharding(self.mesh, PartitionSpec()))

    def check_batch_size(self, batch_size: int, name: str = "batch_size") -> None:
        if batch_size % self.num_devices:
            raise ValueError(f"{name} ({batch_size}) must be divisible by the number of devices ({self.num_devices})")
