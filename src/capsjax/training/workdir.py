"""A run's work directory, claimed for the run's life: one run at a time, and nobody else's files overwritten.

:func:`claim_workdir` creates the folder if needed, takes an exclusive lock on it (``flock`` on the
folder itself, so no lock file is left behind and a crashed run never holds it), and checks what
it holds against what the run is about to do:

- a new run refuses a folder that holds any file a run writes (``config.json``, ``summary.json``,
  ``metrics.jsonl``, ``checkpoints/``, ...): those are another run's results;
- ``--resume`` needs a folder that holds a run (``config.json``).

A refused claim removes the folder again if it created it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
from collections.abc import Iterator

from capsjax.errors import WorkdirError

# What a run writes in its work directory (see capsjax.training.loop); a new run refuses a folder holding any.
RUN_FILES = ("config.json", "summary.json", "metrics.jsonl", "checkpoints", "tensorboard")
RUN_FILE_PATTERNS = ("reconstructions_epoch*.png",)


def run_files_in(workdir: pathlib.Path) -> list[str]:
    """The names in ``workdir`` that a run writes (sorted); empty for a new or unrelated folder."""
    found = {name for name in RUN_FILES if (workdir / name).exists()}
    found |= {path.name for pattern in RUN_FILE_PATTERNS for path in workdir.glob(pattern)}
    return sorted(found)


def _make_folder(workdir: pathlib.Path) -> bool:
    """Create ``workdir`` (and its parents); returns whether it was created here."""
    if workdir.exists() and not workdir.is_dir():
        raise WorkdirError(f"--workdir {workdir}: is a file, not a folder; choose another --workdir")
    created = not workdir.exists()
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / f".capsjax-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise WorkdirError(f"--workdir {workdir}: cannot write there ({err.strerror or err})") from None
    return created


def _lock(workdir: pathlib.Path) -> int:
    """An open descriptor of ``workdir`` holding an exclusive ``flock``; raises if another run holds it."""
    descriptor = os.open(workdir, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise WorkdirError(
            f"--workdir {workdir}: another capsjax run is using it; wait for it to end, or choose another --workdir"
        ) from None
    return descriptor


def check_contents(workdir: pathlib.Path, *, resume: bool) -> None:
    """Refuse a new run into another run's folder, and ``--resume`` of a folder that holds no run."""
    found = run_files_in(workdir)
    if not resume and found:
        raise WorkdirError(
            f"--workdir {workdir}: holds another run's files ({', '.join(found)}); continue that run with "
            "--resume, or train into a new --workdir"
        )
    if resume and found and not (workdir / "config.json").is_file():
        raise WorkdirError(
            f"--workdir {workdir}: has run files ({', '.join(found)}) but no config.json, so it cannot be "
            "resumed; train into a new --workdir"
        )


@contextlib.contextmanager
def claim_workdir(workdir: str | pathlib.Path, *, resume: bool, exclusive: bool = True) -> Iterator[pathlib.Path]:
    """Hold ``workdir`` for a run: created, locked (``exclusive``) and checked; released on exit.

    Args:
      workdir: the folder (created with its parents if missing).
      resume: the run continues the one in the folder (else the folder must hold no run's files).
      exclusive: take the lock and check the contents (process 0 of a distributed run does; the other
        processes, which write only their part of each checkpoint, share its claim).

    Raises:
      WorkdirError: one line: a file, not writable, held by another run, or holding another run's files.
    """
    workdir = pathlib.Path(workdir)
    created = _make_folder(workdir)
    descriptor = _lock(workdir) if exclusive else None
    try:
        if exclusive:
            check_contents(workdir, resume=resume)
        yield workdir
    except BaseException:
        if created and not any(workdir.iterdir()):
            workdir.rmdir()  # a refused or interrupted start leaves nothing behind
        raise
    finally:
        if descriptor is not None:
            os.close(descriptor)  # closing releases the flock


def finished_summary(workdir: pathlib.Path, latest_step: int | None, total_steps: int) -> dict | None:
    """The summary of a completed run whose last checkpoint is its last step; None otherwise."""
    path = workdir / "summary.json"
    if latest_step is None or latest_step < total_steps or not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # a damaged summary is written anew by the final evaluation
    done = summary.get("status") == "completed" and summary.get("step") == latest_step
    return summary if done and summary.get("test_accuracy") is not None else None
