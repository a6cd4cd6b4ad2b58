"""What can be wrong with a checkpoint, each told in one line: the error classes of checkpoints, a
write that failed for lack of space or permission (:func:`storage_errors`), the damaged file of a
checkpoint that cannot be read back, and the first variable of a checkpoint's metadata that differs
from the abstract shapes of a config's model.

:mod:`capsjax.training.checkpoint` (the :class:`~capsjax.training.checkpoint.Checkpointer`) raises
these and re-exports every public name of this module (import them from there).
"""

from __future__ import annotations

import contextlib
import errno
import json
import pathlib
import re

import jax
import numpy as np

from capsjax.errors import ConfigError, StorageError, WorkdirError, first_line

_STORAGE_ERRORS = {  # what tensorstore / orbax say, as the OSError a user would recognise
    "RESOURCE_EXHAUSTED": (errno.ENOSPC, "no space left on device"),
    "No space left on device": (errno.ENOSPC, "no space left on device"),
    "PERMISSION_DENIED": (errno.EACCES, "permission denied"),
    "Permission denied": (errno.EACCES, "permission denied"),
    "Read-only file system": (errno.EROFS, "read-only file system"),
}
_STORAGE_ERRNOS = {  # an OSError of the file system, by its code
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
}


class DamagedCheckpointError(StorageError):
    """A checkpoint that cannot be read back: a file of it is truncated, missing or damaged."""


class CheckpointMismatchError(ConfigError):
    """A checkpoint whose variables are not those of this config's model (names, shapes or dtypes)."""


class MissingCheckpointError(WorkdirError, FileNotFoundError):
    """A work directory without a run, without checkpoints, or without the step asked for."""


def _storage_error(err: BaseException, directory: pathlib.Path) -> StorageError | None:
    """The one-line :class:`StorageError` naming ``directory`` that a failed write stands for, or None
    if ``err`` is not a lack of space or permission."""
    problem = None
    if isinstance(err, OSError) and err.errno in _STORAGE_ERRNOS:
        code, problem = err.errno, _STORAGE_ERRNOS[err.errno]
    else:
        code, problem = next((found for marker, found in _STORAGE_ERRORS.items() if marker in str(err)), (0, None))
    if problem is None:
        return None
    text = f"{problem}: a checkpoint could not be written (the last complete one is kept)"
    return StorageError(code, text, str(directory))


@contextlib.contextmanager
def storage_errors(directory: pathlib.Path):
    """Turn a checkpoint write that failed for lack of space or permission into one :class:`StorageError`
    (an ``OSError``) naming ``directory``; orbax reports these as ValueError, RuntimeError or an OSError
    naming one of its temporary folders, with a long message. Other errors pass through unchanged."""
    try:
        yield
    except (ValueError, RuntimeError, OSError) as err:
        if isinstance(err, StorageError):
            raise
        converted = _storage_error(err, directory)
        if converted is None:
            raise
        raise converted from err


def _origin(err: BaseException) -> BaseException:
    """The error of orbax's that :func:`storage_errors` turned into ``err``, or ``err`` itself."""
    return err.__cause__ if isinstance(err, StorageError) and err.__cause__ is not None else err


def _damage(err: BaseException, folder: pathlib.Path) -> str:
    """What ``err``, raised reading the checkpoint in ``folder``, says is wrong, in one short line:
    the damaged file (relative to ``folder``) and tensorstore's complaint about it, when it names one."""
    if isinstance(err, json.JSONDecodeError):
        return f"a metadata file is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})"
    text = first_line(err).split(" [tensorstore_spec", 1)[0]
    files = list(re.finditer(r'local file "([^"]+)"(?:: )?', text))
    if not files:
        return text[:300]
    path, detail = pathlib.Path(files[-1].group(1)), text[files[-1].end() :]
    with contextlib.suppress(ValueError):
        path = path.relative_to(folder)
    return f"{path}: {detail}"[:300] if detail else str(path)


def _key_name(key) -> str:
    """One entry of a pytree path as text (a dict key, an attribute name or a sequence index)."""
    for attribute in ("key", "name", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def _shapes(tree) -> dict[str, tuple[tuple[int, ...], np.dtype | None]]:
    """``{"params/conv/kernel/value": (shape, dtype)}`` of every leaf of ``tree``: arrays,
    ``jax.ShapeDtypeStruct`` s, orbax array metadata or Python scalars (dtype None: a Python number,
    weakly typed in ``jax.eval_shape``, is stored with NumPy's dtype and restored as it was)."""
    shapes = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        shape = tuple(leaf.shape) if hasattr(leaf, "shape") else np.shape(leaf)
        typed = getattr(leaf, "dtype", None) is not None and not getattr(leaf, "weak_type", False)
        dtype = np.dtype(leaf.dtype) if typed else None
        shapes["/".join(_key_name(key) for key in path)] = (shape, dtype)
    return shapes


def _some(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{names[0]} (and {len(names) - 1} more)"


def _difference(stored: dict, expected: dict) -> str | None:
    """The first way the stored variables differ from the expected ones, in words, or None."""
    missing = [name for name in expected if name not in stored]
    if missing:
        return f"this config's model has {_some(missing)}, which the checkpoint does not hold"
    extra = [name for name in stored if name not in expected]
    if extra:
        return f"the checkpoint holds {_some(extra)}, which this config's model does not have"
    for name, (shape, dtype) in expected.items():
        stored_shape, stored_dtype = stored[name]
        shown = name.removesuffix("/value")  # an nnx.Variable's array
        if stored_shape != shape:
            return f"{shown} has shape {stored_shape}, this config's model {shape}"
        if None not in (dtype, stored_dtype) and stored_dtype != dtype:
            return f"{shown} has dtype {stored_dtype}, this config's model {dtype}"
    return None
