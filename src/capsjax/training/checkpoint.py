"""Orbax checkpoints of the training state (atomic: a run killed mid-save keeps the previous one)."""

from __future__ import annotations

import contextlib
import errno
import pathlib

import jax
import orbax.checkpoint as ocp

from capsjax.training.config import TrainConfig, read_config
from capsjax.training.state import evaluation_params, init_state

_STORAGE_ERRORS = {  # what tensorstore / orbax say, as the OSError a user would recognise
    "RESOURCE_EXHAUSTED": (errno.ENOSPC, "no space left on device"),
    "No space left on device": (errno.ENOSPC, "no space left on device"),
    "PERMISSION_DENIED": (errno.EACCES, "permission denied"),
    "Permission denied": (errno.EACCES, "permission denied"),
}


@contextlib.contextmanager
def storage_errors(directory: pathlib.Path):
    """Turn a checkpoint write that failed for lack of space or permission into one ``OSError``
    naming ``directory`` (orbax reports these as ValueError or RuntimeError with a long message)."""
    try:
        yield
    except (ValueError, RuntimeError) as err:
        for marker, (code, problem) in _STORAGE_ERRORS.items():
            if marker in str(err):
                raise OSError(
                    code,
                    f"{problem}: a checkpoint could not be written (the last complete one is kept)",
                    str(directory),
                ) from err
        raise


class Checkpointer:
    """Save and restore a pytree under ``workdir/checkpoints/<step>``, keeping the newest ``keep``
    (every one with ``keep=None``)."""

    def __init__(self, workdir: str | pathlib.Path, *, keep: int | None = 2):
        directory = (pathlib.Path(workdir) / "checkpoints").absolute()
        self.manager = ocp.CheckpointManager(
            directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state, *, wait: bool = False) -> None:
        """Save ``state`` as ``step`` (asynchronously unless ``wait``); an existing step is kept."""
        if step in self.manager.all_steps():
            return
        with storage_errors(self.manager.directory):
            self.manager.save(step, args=ocp.args.StandardSave(state))
            if wait:
                self.manager.wait_until_finished()

    def restore(self, like, step: int | None = None):
        """Restore the checkpoint ``step`` (default: latest) into the structure and shardings of ``like``."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.manager.directory}")
        if step not in self.manager.all_steps():
            raise FileNotFoundError(
                f"no checkpoint of step {step} in {self.manager.directory}; it holds steps {self.all_steps()}"
            )
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        with storage_errors(self.manager.directory):
            try:
                self.manager.wait_until_finished()
            finally:
                self.manager.close()


def restore_params(workdir: str | pathlib.Path, *, step: int | None = None) -> tuple[TrainConfig, object, object]:
    """``(config, graphdef, params)`` of checkpoint ``step`` (default: the latest) of a run's work directory
    (the parameter average for a run that keeps one, see :func:`~capsjax.training.state.evaluation_params`)."""
    workdir = pathlib.Path(workdir)
    if not (workdir / "config.json").exists():
        raise FileNotFoundError(f"{workdir} is not a capsjax work directory (no config.json)")
    config = read_config(workdir / "config.json")
    graphdef, state = init_state(config)
    checkpointer = Checkpointer(workdir, keep=None)  # reading must never prune a run's checkpoints
    try:
        state = checkpointer.restore(state, step)
    finally:
        checkpointer.close()
    return config, graphdef, evaluation_params(state, config.optim)
