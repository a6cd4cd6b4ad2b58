"""Orbax checkpoints of the training state (atomic: a run killed mid-save keeps the previous one).

A run's checkpoints live in ``workdir/checkpoints/<step>``; that folder is made by the first save,
so a run refused or stopped before it saved leaves none. Restoring the newest checkpoint falls back
to the newest intact one when files of the newest are damaged (a truncated copy, a bad disk), with a
warning that names the damaged one. Closing waits for background writes with a deadline, and a failed
write leaves no thread of orbax's behind that would keep the process from exiting.

The error classes and the one-line words for what is wrong with a checkpoint (a failed write, a
damaged file, variables that differ from the model's) live in :mod:`capsjax.training.checkpoint_errors`;
this module re-exports them, so import every name from here.
"""

from __future__ import annotations

import errno
import logging
import pathlib
import threading
from collections.abc import Callable
from typing import TypeVar

import jax
import orbax.checkpoint as ocp

from capsjax.errors import StorageError, first_line
from capsjax.training.checkpoint_errors import (
    CheckpointMismatchError,
    DamagedCheckpointError,
    MissingCheckpointError,
    _damage,
    _difference,
    _origin,
    _shapes,
    storage_errors,
)
from capsjax.training.config import TrainConfig, read_config
from capsjax.training.distributed import is_peer_failure
from capsjax.training.state import evaluation_params, init_state

log = logging.getLogger("capsjax")

T = TypeVar("T")

CLOSE_TIMEOUT_S = 600.0  # how long close() waits for a background write by default

# Damaged checkpoint folders warned about: checking a run before it starts and restoring it warn once.
_WARNED: set[pathlib.Path] = set()


def _wait(function: Callable[[], None], timeout: float | None) -> bool:
    """Call ``function`` and wait at most ``timeout`` seconds (None: no limit) for it to return.

    Returns:
      False if it had not returned by then (it goes on in a daemon thread); True if it returned.

    Raises:
      whatever ``function`` raised.
    """
    if timeout is None:
        function()
        return True
    raised: list[BaseException] = []

    def run() -> None:
        try:
            function()
        except BaseException as err:  # handed to the waiting thread
            raised.append(err)

    thread = threading.Thread(target=run, name="capsjax-checkpoint-wait", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return False
    if raised:
        raise raised[0]
    return True


class Checkpointer:
    """Save and restore a pytree under ``workdir/checkpoints/<step>``, keeping the newest ``keep``
    (every one with ``keep=None``).

    Making one writes nothing: the ``checkpoints`` folder is made by the first :meth:`save`. Use it as a
    context manager (``with Checkpointer(workdir) as checkpointer:``) or call :meth:`close` when done.

    Attributes:
      directory: the absolute ``workdir/checkpoints`` folder.
      restored_step: the step the latest :meth:`restore` read (None before one).
    """

    def __init__(self, workdir: str | pathlib.Path, *, keep: int | None = 2):
        self.directory = (pathlib.Path(workdir) / "checkpoints").absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=False,
            # A folder that cannot be made fails save() itself: made in the background, its failure
            # left orbax's writer threads waiting for it (for minutes) and the process unable to exit.
            async_options=ocp.AsyncOptions(create_directories_asynchronously=False),
        )
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=ocp.StandardCheckpointHandler()
        )
        self.restored_step: int | None = None
        self._raised: BaseException | None = None  # the write failure save() raised: close() does not repeat it
        self._abandoned = False

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, kind, err, traceback) -> None:
        """Close; if the block raised, a failure to close is logged and the block's error goes on."""
        if err is None:
            self.close()
            return
        try:
            self.close()
        except Exception as close_err:
            log.warning("closing the checkpoints after an error failed too: %s", close_err)

    def latest_step(self) -> int | None:
        """The newest checkpoint's step (intact or not), None if there is none."""
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        """The steps of the checkpoints, oldest first."""
        return sorted(self.manager.all_steps())

    def save(self, step: int, state, *, wait: bool = False) -> None:
        """Save ``state`` as ``step`` (asynchronously unless ``wait``); an existing step is kept.

        Raises:
          StorageError: this write, or the previous asynchronous one, failed for lack of space or
            permission (naming the checkpoints folder; the last complete checkpoint is kept).
        """
        if step in self.manager.all_steps():
            return
        try:
            with storage_errors(self.directory):
                self.directory.mkdir(parents=True, exist_ok=True)
                self.manager.save(step, args=ocp.args.StandardSave(state))
                if wait:
                    self.manager.wait_until_finished()
        except Exception as err:
            self._raised = _origin(err)
            raise

    def step_folder(self, step: int) -> pathlib.Path:
        """The folder of checkpoint ``step``."""
        return self.directory / str(step)

    def _steps(self) -> list[int]:
        """:meth:`all_steps`, checked not to be empty.

        Raises:
          MissingCheckpointError: there is no checkpoint.
        """
        steps = self.all_steps()
        if not steps:
            raise MissingCheckpointError(f"no checkpoint in {self.directory}: train the run first, or name its workdir")
        return steps

    def _existing_step(self, step: int | None) -> int:
        """``step``, or the newest step for None, checked to exist.

        Raises:
          MissingCheckpointError: there is no checkpoint, or none of ``step``.
        """
        steps = self._steps()
        if step is None:
            return steps[-1]
        if step not in steps:
            raise MissingCheckpointError(f"no checkpoint of step {step} in {self.directory}; it holds steps {steps}")
        return step

    def _damaged(self, step: int, err: BaseException) -> DamagedCheckpointError:
        problem = _damage(err, self.step_folder(step))
        return DamagedCheckpointError(f"checkpoint {self.step_folder(step)} is damaged: {problem}")

    def _check_step(self, like, step: int) -> None:
        """Compare checkpoint ``step``'s metadata with ``like`` (a checkpoint without metadata passes).

        Raises:
          CheckpointMismatchError: they differ.
          DamagedCheckpointError: the metadata cannot be read.
        """
        try:
            metadata = self.manager.item_metadata(step)
        except (ValueError, OSError) as err:
            if is_peer_failure(err):
                raise
            raise self._damaged(step, err) from err
        if metadata is None:
            return
        problem = _difference(_shapes(getattr(metadata, "tree", metadata)), _shapes(like))
        if problem:
            raise CheckpointMismatchError(
                f"checkpoint step {step} in {self.directory}: {problem}: "
                "resume with the config the run was trained with"
            )

    def _restore_step(self, like, step: int):
        """Checkpoint ``step`` in the structure and shardings of ``like``.

        Raises:
          CheckpointMismatchError: its variables differ from ``like``'s.
          DamagedCheckpointError: a file of it cannot be read.
        """
        self._check_step(like, step)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except (ValueError, OSError) as err:
            if is_peer_failure(err):
                raise
            raise self._damaged(step, err) from err

    def _newest_intact(self, read: Callable[[int], T]) -> tuple[int, T]:
        """``(step, read(step))`` of the newest step that ``read`` finds intact, with one warning for each
        damaged step passed over (once per folder and process).

        Raises:
          MissingCheckpointError: there is no checkpoint.
          DamagedCheckpointError: every checkpoint is damaged (one line naming the folder).
        """
        steps = self._steps()
        damaged: list[tuple[int, DamagedCheckpointError]] = []
        for step in reversed(steps):
            try:
                found = read(step)
            except DamagedCheckpointError as err:
                damaged.append((step, err))
                continue
            for passed_over, err in damaged:
                if self.step_folder(passed_over) not in _WARNED:
                    _WARNED.add(self.step_folder(passed_over))
                    log.warning("%s; using step %d, the newest intact checkpoint", err, step)
            return step, found
        raise DamagedCheckpointError(
            f"every checkpoint in {self.directory} is damaged (steps {steps}; the newest: {damaged[0][1]}): "
            "start the run anew in another work directory, or put back the checkpoint files from a copy"
        )

    def check_compatible(self, like, step: int | None = None) -> int:
        """Check, from its metadata alone, that checkpoint ``step`` holds the variables of ``like``.

        Usable before any array is made: ``like`` may hold ``jax.ShapeDtypeStruct`` s, e.g.
        ``jax.eval_shape(lambda: init_state(config)[1])``.

        Args:
          like: a pytree of arrays or ``jax.ShapeDtypeStruct`` s, as given to :meth:`restore`.
          step: the checkpoint to check; None: the newest one whose metadata can be read.

        Returns:
          the step checked.

        Raises:
          MissingCheckpointError: there is no checkpoint, or none of ``step``.
          CheckpointMismatchError: a variable is missing, extra, or of another shape or dtype (one line
            naming its path and both shapes).
          DamagedCheckpointError: the metadata of ``step`` (or of every checkpoint) cannot be read.
        """
        if step is not None:
            self._check_step(like, self._existing_step(step))
            return step
        return self._newest_intact(lambda newest: self._check_step(like, newest))[0]

    def restore_latest_intact(self, like) -> tuple[int, object]:
        """``(step, state)`` of the newest checkpoint that can be read, in the structure and shardings of
        ``like``; a damaged newer one is passed over with a warning naming its folder and what is wrong.

        Raises:
          MissingCheckpointError: there is no checkpoint.
          CheckpointMismatchError: the newest readable checkpoint's variables differ from ``like``'s.
          DamagedCheckpointError: every checkpoint is damaged.
        """
        step, state = self._newest_intact(lambda newest: self._restore_step(like, newest))
        self.restored_step = step
        return step, state

    def restore(self, like, step: int | None = None):
        """Restore checkpoint ``step`` into the structure and shardings of ``like``.

        Args:
          like: a pytree of arrays (or ``jax.ShapeDtypeStruct`` s) of the checkpoint's structure.
          step: the checkpoint to read; None: the newest intact one (see :meth:`restore_latest_intact`).
            The step read is left in :attr:`restored_step`.

        Raises:
          MissingCheckpointError: there is no checkpoint, or none of ``step``.
          CheckpointMismatchError: the checkpoint's variables differ from ``like``'s.
          DamagedCheckpointError: checkpoint ``step`` (or every one, for None) is damaged.
        """
        if step is None:
            return self.restore_latest_intact(like)[1]
        step = self._existing_step(step)
        try:
            state = self._restore_step(like, step)
        except DamagedCheckpointError as err:
            others = [other for other in self.all_steps() if other != step]
            raise DamagedCheckpointError(
                f"{err}: restore another step ({others}) or leave the step out for the newest intact one"
            ) from err
        self.restored_step = step
        return state

    def close(self, *, timeout: float | None = CLOSE_TIMEOUT_S) -> None:
        """Wait at most ``timeout`` seconds (None: no limit) for a background write, then stop orbax's threads.

        Raises:
          StorageError: the background write failed for lack of space or permission (unless :meth:`save`
            raised that failure already), or did not finish within ``timeout``.
        """
        if self._abandoned:
            return
        try:
            with storage_errors(self.directory):
                finished = _wait(self.manager.wait_until_finished, timeout)
        except Exception as err:
            self._shut_down(failed=True)
            if _origin(err) is not self._raised:
                raise
            return
        if not finished:  # orbax's close() would wait for the write again
            raise StorageError(
                errno.ETIMEDOUT,
                f"a checkpoint write did not finish within {timeout:g} s (the last complete one is kept)",
                str(self.directory),
            )
        self._shut_down(failed=False)

    def abandon(self) -> None:
        """Give up on background writes: :meth:`close` (and leaving the ``with`` block) returns at once,
        neither waiting for them nor closing orbax's manager. For a distributed run that lost a process,
        whose collective write would wait for it; the write's threads end with orbax's own timeouts."""
        self._abandoned = True

    def _shut_down(self, *, failed: bool) -> None:
        """Close orbax's manager. After a ``failed`` write its close raises that failure again (already
        reported) before closing anything; what it leaves open holds no thread that keeps a process alive."""
        try:
            self.manager.close()
        except Exception as err:
            if not failed:
                raise
            log.debug("closing the checkpoint manager after a failed write: %s", first_line(err))


def restore_params_and_step(
    workdir: str | pathlib.Path, *, step: int | None = None
) -> tuple[TrainConfig, object, object, int]:
    """``(config, graphdef, params, step)`` of checkpoint ``step`` (default: the newest intact one) of a
    run's work directory; ``params`` as :func:`restore_params` gives them, ``step`` the one read.

    Raises:
      MissingCheckpointError: ``workdir`` holds no run (no config.json), no checkpoint, or none of ``step``.
      CheckpointMismatchError: the checkpoint does not fit the model of the run's config.
      DamagedCheckpointError: checkpoint ``step`` (or, for None, every checkpoint) is damaged.
    """
    workdir = pathlib.Path(workdir)
    if not (workdir / "config.json").exists():
        raise MissingCheckpointError(f"{workdir} is not a capsjax work directory (no config.json)")
    config = read_config(workdir / "config.json")
    graphdef, state = init_state(config)
    with Checkpointer(workdir, keep=None) as checkpointer:  # reading must never prune a run's checkpoints
        state = checkpointer.restore(state, step)
        restored = checkpointer.restored_step
    return config, graphdef, evaluation_params(state, config.optim), restored


def restore_params(workdir: str | pathlib.Path, *, step: int | None = None) -> tuple[TrainConfig, object, object]:
    """``(config, graphdef, params)`` of checkpoint ``step`` (default: the newest intact one) of a run's work
    directory (the parameter average for a run that keeps one, see :func:`~capsjax.training.state.evaluation_params`).

    Raises:
      see :func:`restore_params_and_step`.
    """
    return restore_params_and_step(workdir, step=step)[:3]


# Public names, those of the module they come from included, in the order the API reference shows them.
__all__ = [
    "CLOSE_TIMEOUT_S",
    "DamagedCheckpointError",
    "CheckpointMismatchError",
    "MissingCheckpointError",
    "storage_errors",
    "Checkpointer",
    "restore_params_and_step",
    "restore_params",
]
