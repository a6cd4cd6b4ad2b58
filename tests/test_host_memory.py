import ctypes.util
import sys

import pytest

from capsjax.training import host_memory

on_glibc = sys.platform.startswith("linux") and ctypes.util.find_library("c") is not None


@pytest.mark.skipif(not on_glibc, reason="glibc's malloc only")
def test_glibc_takes_the_arena_limit_and_the_trim():
    assert host_memory.limit_malloc_arenas() is True
    assert isinstance(host_memory.release_free_memory(), bool)


def test_without_glibc_both_do_nothing_and_say_so(monkeypatch):
    monkeypatch.setattr(host_memory, "_glibc", lambda: None)
    assert host_memory.limit_malloc_arenas() is False
    assert host_memory.release_free_memory() is False
