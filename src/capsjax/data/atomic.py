"""Files written whole or not at all: a temporary file beside the target, renamed over it when complete.

A crash, a full disk or an interrupt never leaves a half-written file under the final name, nor a
temporary one behind; a failure is one :class:`~capsjax.errors.StorageError` naming the path.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
from collections.abc import Iterator

from capsjax.errors import StorageError


@contextlib.contextmanager
def atomic_path(path: str | pathlib.Path) -> Iterator[pathlib.Path]:
    """Yield a temporary path beside ``path``; once the block has written it, rename it to ``path``.

    The temporary file is removed if the block fails (the previous ``path``, if any, is kept).

    Raises:
      StorageError: the folder cannot be created, or the file cannot be written or renamed
        (full disk, no permission), naming ``path``.
    """
    path = pathlib.Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield temporary
        os.replace(temporary, path)
    except OSError as err:
        if isinstance(err, StorageError):
            raise
        raise StorageError(err.errno, f"cannot write the file ({err.strerror or err})", str(path)) from None
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes(path: str | pathlib.Path, data: bytes) -> pathlib.Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return pathlib.Path(path)


def write_text(path: str | pathlib.Path, text: str) -> pathlib.Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    return write_bytes(path, text.encode())


def write_json(path: str | pathlib.Path, record) -> pathlib.Path:
    """Write ``record`` as indented JSON to ``path`` atomically; returns the path."""
    return write_text(path, json.dumps(record, indent=2) + "\n")
