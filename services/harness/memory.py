"""Keeping a long-running process's heap close to what it uses.

glibc's defaults suit short programs: each busy thread may get an arena of
its own, and freed pages in the middle of the heap are only given back by
``malloc_trim``.  A plugin that has streamed a few hundred MiB through 1 MiB
buffers on worker threads keeps tens of MB it no longer uses.  So every berthd
process keeps one arena and trims the heap once a burst of calls is over.

One arena, not a few: ``malloc_trim`` returns the free top of the main arena
only.  A thread arena keeps a free top below the trim threshold for good;
measured, that left the content plugin 4 MB and the differ up to 9 MB larger
after an import than before it.  Sharing one arena cost the import no time
that could be measured (the threads allocate under the GIL anyway).

During a burst the message buffers (1 MiB, at most 16 MiB) stay on the heap
and are reused: the mmap threshold is fixed above the message limit and the
trim threshold above that.  Were each buffer a fresh mmap (or heap top
trimmed at once), every MiB relayed would cost some 250 page faults per copy:
measured, that tripled the CPU a plugin spends per MiB written (2,600 faults
and 1.6 ms per MiB, against 30 and 0.55 ms).  The trim after the burst gives
the pages back all the same.  Without glibc (musl) this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
import time
from typing import Any

log = logging.getLogger(__name__)

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

MMAP_THRESHOLD = 32 << 20  # above the 16 MiB message limit
TRIM_THRESHOLD = 8 << 20
ARENA_MAX = 1
# Calls must have stopped for this long before the heap is trimmed.
QUIET = 1.0


@functools.cache
def _libc() -> Any:
    # The C library is already loaded: dlopen(NULL) finds its symbols without
    # ctypes.util.find_library, which runs ``ldconfig -p`` in a subprocess
    # (in a forked plugin that alone copied 1.5 MB of the daemon's pages).
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def tune() -> None:
    """Set the allocator's parameters: once, at start, before any thread."""
    libc = _libc()
    if libc is None:
        return
    for param, value in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (M_ARENA_MAX, ARENA_MAX),
    ):
        if libc.mallopt(param, value) != 1:
            log.debug("mallopt(%d, %d) refused", param, value)


class HeapKeeper:
    """Trims the heap once calls have stopped for ``quiet`` seconds (``touch()``
    after each call)."""

    def __init__(self, quiet: float = QUIET) -> None:
        self.quiet = quiet
        self._libc = _libc()
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.trims = 0

    def touch(self) -> None:
        """A call just finished: trim once none has for ``quiet`` seconds."""
        if self._libc is None:
            return
        self._last = time.monotonic()
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.quiet, self._due)

    def _due(self) -> None:
        idle = time.monotonic() - self._last
        if idle < self.quiet:
            self._timer = asyncio.get_running_loop().call_later(self.quiet - idle, self._due)
            return
        self._timer = None
        self.trim()

    def trim(self) -> None:
        if self._libc is not None:
            self._libc.malloc_trim(0)
            self.trims += 1

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
