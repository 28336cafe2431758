"""Memory a build freed goes back to the system."""

from __future__ import annotations

import ctypes
import platform

import pytest

from qa.memory import release_free_memory


def resident_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_pages_that_glibc_keeps_are_given_back() -> None:
    ctypes.CDLL(None).malloc_trim(0)  # start from a trimmed heap
    blocks = [bytes(2000) for _ in range(100_000)]  # 200 MB of blocks glibc (not Python's arenas) holds
    survivors = blocks[::50]  # a few stay alive all over the heap, so glibc cannot shrink it from the top
    del blocks
    kept = resident_mb()
    release_free_memory()
    assert kept - resident_mb() > 100
    assert len(survivors) == 2000
