"""Where arrays live: the batch axis split over every device with a ``jax.sharding.Mesh``.

The same code runs on 1 CPU, 8 GPUs, a TPU slice or several processes (see
:mod:`capsjax.training.distributed`): the mesh spans the devices of every process; each process
holds the rows of a global batch that its own devices hold (:meth:`Sharding.process_rows`) and
builds the global arrays from them.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


@dataclasses.dataclass(frozen=True)
class Sharding:
    """Where arrays live: a 1-D mesh over devices; batches split on ``"data"``, the state replicated."""

    mesh: Mesh

    @classmethod
    def over_local_devices(cls) -> Sharding:
        """This process's devices only (evaluation, benchmarks)."""
        return cls(Mesh(np.array(jax.local_devices()), ("data",)))

    @classmethod
    def over_all_devices(cls) -> Sharding:
        """Every device of every process (training; the same as the local ones in one process)."""
        return cls(Mesh(np.array(jax.devices()), ("data",)))

    @property
    def num_devices(self) -> int:
        return self.mesh.devices.size

    @property
    def spans_processes(self) -> bool:
        return any(device.process_index != jax.process_index() for device in self.mesh.devices.flat)

    def process_rows(self, batch_size: int) -> slice:
        """The rows ``[start, stop)`` of a global batch of ``batch_size`` that this process holds.

        Raises:
          ValueError: this process's devices do not hold one contiguous block of rows.
        """
        index_map = NamedSharding(self.mesh, PartitionSpec("data")).addressable_devices_indices_map((batch_size,))
        blocks = sorted(
            {
                (index[0].start or 0, batch_size if index[0].stop is None else index[0].stop)
                for index in index_map.values()
            }
        )
        start, stop = blocks[0][0], blocks[-1][1]
        if sum(b - a for a, b in blocks) != stop - start:
            raise ValueError(f"this process's devices hold rows {blocks} of the batch, not one block")
        return slice(start, stop)

    def batch(self, tree):
        """Global arrays split over the devices along the leading (batch) axis, from this process's
        rows of every leaf (:meth:`process_rows`; all of them in a single process)."""
        sharding = NamedSharding(self.mesh, PartitionSpec("data"))
        if not self.spans_processes:
            return jax.device_put(tree, sharding)
        return jax.tree.map(lambda rows: jax.make_array_from_process_local_data(sharding, np.asarray(rows)), tree)

    def replicated(self, tree):
        """Every leaf copied to every device (each process passes the same values)."""
        sharding = NamedSharding(self.mesh, PartitionSpec())
        if not self.spans_processes:
            return jax.device_put(tree, sharding)
        return jax.tree.map(lambda x: jax.device_put(np.asarray(jax.device_get(x)), sharding), tree)

    def check_batch_size(self, batch_size: int, name: str = "batch_size") -> None:
        if batch_size % self.num_devices:
            raise ValueError(f"{name} ({batch_size}) must be divisible by the number of devices ({self.num_devices})")
