"""Freed heap memory goes back to the system between batches, so a long-running bot's RSS stays flat."""

from __future__ import annotations

import platform
import time

import psutil
import pytest

from mmpp.memory import HeapTrimmer, release_free_heap

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


@glibc
def test_memory_freed_in_the_middle_of_the_heap_is_given_back() -> None:
    # Blocks under glibc's mmap threshold live on the heap; the last one pins its top, so freeing
    # the others leaves 190 MB free in the middle, which free() alone keeps.
    blocks = [bytearray(64 * 1024) for _ in range(3000)]
    pin = blocks[-1]
    del blocks
    freed = rss_mb()
    assert release_free_heap()
    assert freed - rss_mb() > 100
    del pin


def test_the_trimmer_runs_at_most_once_per_interval() -> None:
    trimmer = HeapTrimmer(interval_s=0.2)
    assert not trimmer.due()
    time.sleep(0.21)
    assert trimmer.due()
    trimmer.trim()
    assert not trimmer.due()
