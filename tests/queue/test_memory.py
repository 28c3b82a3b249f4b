"""A long-running bot's RSS stays flat: few malloc arenas, and freed heap given back between batches."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

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


ARENA_PROBE = """
import ctypes, ctypes.util, os, re, sys, tempfile, threading
from mmpp.memory import limit_arenas
if sys.argv[1] == "limit":
    limit_arenas()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.fdopen.restype = ctypes.c_void_p
together = threading.Barrier(8)
held = []
def allocate():
    together.wait()  # eight threads allocating at once: glibc would give each its own arena
    held.append([bytearray(1000) for _ in range(2000)])
    together.wait()
threads = [threading.Thread(target=allocate) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
with tempfile.TemporaryFile() as f:
    stream = ctypes.c_void_p(libc.fdopen(os.dup(f.fileno()), b"w"))
    libc.malloc_info(0, stream)
    libc.fflush(stream)
    f.seek(0)
    print(len(re.findall(r"<heap nr=", f.read().decode())))
"""


def arenas_used(mode: str, **env: str) -> int:
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    out = subprocess.run([sys.executable, "-c", ARENA_PROBE, mode], capture_output=True, text=True, check=True,
                         env=environment, cwd=Path(__file__).resolve().parents[2])
    return int(out.stdout.split()[-1])


@glibc
def test_long_running_commands_cap_mallocs_arenas_unless_the_operator_set_them() -> None:
    # Eight allocating threads get several arenas by default, each keeping its own free memory.
    assert arenas_used("default") > 2
    assert arenas_used("limit") == 2
    assert arenas_used("limit", MALLOC_ARENA_MAX="3") == 3
