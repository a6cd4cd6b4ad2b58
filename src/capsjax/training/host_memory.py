"""Host memory of a training process: how glibc's ``malloc`` is asked to hold less of it.

XLA's CPU client allocates with ``malloc``. Two habits of glibc's allocator raise a training
process's resident memory without making it faster (measured in experiments/bench_cpu.md):

- Compiling a step leaves hundreds of MiB of the compiler's freed memory in the heap, where the
  step's buffers cannot always reuse it; :func:`release_free_memory` (``malloc_trim``) hands it back
  to the system once the step is compiled.
- Every thread that allocates under contention gets an arena of its own, and each arena keeps its
  freed blocks; :func:`limit_malloc_arenas` (``mallopt(M_ARENA_MAX, 1)``) makes every thread share one.
  It must run before the threads first allocate, so the command line calls it first thing.

Both are no-ops where the C library is not glibc (macOS, musl): nothing there depends on them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_ARENA_MAX = -8  # glibc's malloc.h


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """glibc, or ``None`` where this process runs on another C library."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def limit_malloc_arenas(arenas: int = 1) -> bool:
    """Let at most ``arenas`` malloc arenas serve this process's threads; returns whether glibc took it."""
    libc = _glibc()
    return libc is not None and libc.mallopt(M_ARENA_MAX, arenas) == 1


def release_free_memory() -> bool:
    """Return the heap's free pages to the system (``malloc_trim(0)``); returns whether any were."""
    libc = _glibc()
    return libc is not None and libc.malloc_trim(0) == 1
