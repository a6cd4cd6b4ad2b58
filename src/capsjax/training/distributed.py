"""Joining a multi-process run on JAX's distributed runtime, and what each process may do in it.

Every process runs the same program: :func:`initialize` connects it to the others before any other
JAX call, after which ``jax.devices()`` lists the devices of every process (one mesh spans them all;
see :mod:`capsjax.training.sharding`). Process 0 alone writes files other than checkpoints
(:func:`is_primary`); checkpoints are written by all processes together.

Where the processes come from:

* given: ``capsjax train --coordinator HOST:PORT --num-processes N --process-id I`` on each process
  (or the environment variables ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``);
* found: a job step of several SLURM tasks (``srun``), several Open MPI ranks (``mpirun``), or a
  multi-host Cloud TPU slice, where JAX reads the cluster's own settings (:func:`cluster_detected`).

On CPU the processes exchange data through Gloo collectives over TCP. When one process dies, the
others fail in their next collective ("connection closed by peer") or, at the latest, when the
coordination service misses its heartbeats for ``heartbeat_timeout`` seconds.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import jax
import numpy as np

from capsjax.errors import DistributedError, first_line

log = logging.getLogger("capsjax")


@dataclasses.dataclass(frozen=True)
class ProcessSpec:
    """How this process joins a run: ``coordinator`` (``HOST:PORT`` of process 0's coordination
    service), ``num_processes`` and ``process_id`` (``0 .. num_processes - 1``); None fields are
    left for JAX to find in the cluster's environment."""

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None

    @classmethod
    def from_environment(cls) -> ProcessSpec:
        """The ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` variables."""
        env = os.environ
        return cls(
            env.get("JAX_COORDINATOR_ADDRESS") or None,
            int(env["JAX_NUM_PROCESSES"]) if env.get("JAX_NUM_PROCESSES") else None,
            int(env["JAX_PROCESS_ID"]) if env.get("JAX_PROCESS_ID") else None,
        )

    def merged(self, other: ProcessSpec) -> ProcessSpec:
        """This spec with its None fields taken from ``other``."""
        return ProcessSpec(
            *(mine if mine is not None else theirs for mine, theirs in zip(self.fields(), other.fields(), strict=True))
        )

    def fields(self) -> tuple:
        return (self.coordinator, self.num_processes, self.process_id)

    def check(self) -> None:
        """Raise ValueError (one line) for an incomplete or inconsistent spec."""
        given = [value is not None for value in self.fields()]
        if any(given) and not all(given) and not cluster_detected():
            raise ValueError(
                "a distributed run needs --coordinator HOST:PORT, --num-processes N and --process-id I together "
                "(or a cluster JAX detects: SLURM, Open MPI, Cloud TPU)"
            )
        if self.coordinator is not None and ":" not in self.coordinator:
            raise ValueError(f"--coordinator {self.coordinator}: expected HOST:PORT (e.g. 10.0.0.1:1234)")
        if self.num_processes is not None and self.num_processes < 1:
            raise ValueError(f"--num-processes {self.num_processes}: must be at least 1")
        if self.process_id is not None and self.num_processes is not None:
            if not 0 <= self.process_id < self.num_processes:
                raise ValueError(
                    f"--process-id {self.process_id}: must be in 0 .. {self.num_processes - 1} "
                    f"for --num-processes {self.num_processes}"
                )


def cluster_detected(environ=None) -> bool:
    """Whether this process was started as one of several by a cluster JAX knows: a SLURM job step
    of several tasks, several Open MPI ranks, or a Cloud TPU slice of several hosts."""
    env = os.environ if environ is None else environ
    if "SLURM_STEP_NODELIST" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        return True
    if int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
        return True
    if "," in env.get("TPU_WORKER_HOSTNAMES", ""):
        return True
    return environ is None and _jax_finds_tpu_slice()


def _jax_finds_tpu_slice() -> bool:
    """JAX's own Cloud TPU detection (it asks the TPU VM's metadata server); False elsewhere."""
    try:
        from jax._src import clusters
        from jax._src.cloud_tpu_init import running_in_cloud_tpu_vm
    except ImportError:  # a JAX without these private modules: the flags or variables are needed
        return False
    if not running_in_cloud_tpu_vm:
        return False
    return any("Tpu" in env.__name__ and env.is_env_present() for env in clusters.ClusterEnv._cluster_types)


def initialize(
    spec: ProcessSpec = ProcessSpec(),
    *,
    heartbeat_timeout: int = 100,
    initialization_timeout: int = 300,
) -> bool:
    """Join the distributed run ``spec`` (merged with :meth:`ProcessSpec.from_environment`) or the
    one the cluster describes; do nothing for a single process. Call before any other JAX call.

    Returns:
      whether this process is now part of a multi-process run.

    Raises:
      ValueError: an incomplete spec, or JAX was used before (one line each).
      DistributedError: the coordinator could not be reached within ``initialization_timeout`` s.
    """
    spec = spec.merged(ProcessSpec.from_environment())
    spec.check()
    if spec.coordinator is None and not cluster_detected():
        return False
    if spec.num_processes == 1:
        return False
    # CPU devices talk over TCP through Gloo; GPUs and TPUs keep their own collectives.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            spec.coordinator,
            spec.num_processes,
            spec.process_id,
            initialization_timeout=initialization_timeout,
            heartbeat_timeout_seconds=heartbeat_timeout,
        )
    except RuntimeError as err:
        if "must be called before" in str(err):
            raise ValueError("the distributed runtime must be initialised before any other JAX call") from None
        raise DistributedError(f"could not join the distributed run at {spec.coordinator}: {first_line(err)}") from err
    log.info(
        "process %d of %d; %d devices in all, %d here",
        jax.process_index(),
        jax.process_count(),
        jax.device_count(),
        jax.local_device_count(),
    )
    return jax.process_count() > 1


def is_primary() -> bool:
    """Whether this process writes the run's files (metrics, figures, summary): process 0."""
    return jax.process_index() == 0


def any_process(*flags: bool) -> tuple[bool, ...]:
    """Each flag OR-ed over the processes: True everywhere where True on at least one (a collective:
    every process must call it at the same point)."""
    if jax.process_count() == 1:
        return tuple(bool(flag) for flag in flags)
    from jax.experimental import multihost_utils

    gathered = multihost_utils.process_allgather(np.array(flags, bool))  # [processes, flags]
    return tuple(bool(flag) for flag in np.asarray(gathered).reshape(-1, len(flags)).any(axis=0))


def is_peer_failure(err: BaseException) -> bool:
    """Whether an error of a multi-process run says another process failed: a collective lost its
    peer, or the coordination service lost a task (JAX raises these; orbax may wrap them)."""
    if jax.process_count() == 1:
        return False
    markers = ("closed by peer", "reset by peer", "Gloo", "heartbeat", "UNAVAILABLE", "coordination service")
    return any(marker in str(err) for marker in markers)
