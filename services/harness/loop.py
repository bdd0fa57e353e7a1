"""The event loop every berthd process runs on.

asyncio's own loop by default; ``BERTHD_EVENT_LOOP=uvloop`` picks uvloop
(libuv), which schedules in C.  uvloop is not the default: under it the
daemon's shim handling (subprocesses that leave daemons behind, ttrpc to the
shims) hung ``ctr run`` in the session that added it, and that is not
understood yet.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, on uvloop's loop when asked for and installed."""
    if os.environ.get("BERTHD_EVENT_LOOP", "") == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(main)
    return asyncio.run(main)
