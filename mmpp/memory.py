"""Giving freed heap memory back to the system, so a long-running process's RSS stays flat.

glibc's malloc keeps what Python, PIL and torch free in its arenas (one per thread that
allocates) and returns it to the system only from the top of each heap. A bot that decodes,
draws and encodes pictures for days frees plenty in the middle, so its RSS creeps up although
nothing leaks. `malloc_trim(0)` hands every whole free page back (all arenas, since glibc 2.8).
Elsewhere (musl, macOS, Windows) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import time


@functools.cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_heap() -> bool:
    """Return the heap's free pages to the system; True when something was released."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False


class HeapTrimmer:
    """Calls `release_free_heap` at most once per `interval_s`, for loops that finish work often."""

    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self._last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.interval_s

    def trim(self) -> bool:
        self._last = time.monotonic()
        return release_free_heap()
