"""The event loop every berthd process runs on.

uvloop (libuv) when it is installed, asyncio's own loop otherwise: the
daemon and its plugins spend much of each call in the loop's scheduling,
which uvloop does in C.  ``BERTHD_EVENT_LOOP=asyncio`` picks the standard
loop (to compare, or to rule uvloop out when chasing a bug).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on uvloop's loop when available."""
    if os.environ.get("BERTHD_EVENT_LOOP", "") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(main)
    return asyncio.run(main)
