"""The event loop every berthd process runs on.

uvloop (libuv, scheduling in C) by default: it takes some 15% off the
daemon's cost per gRPC call.  ``BERTHD_EVENT_LOOP=asyncio`` picks asyncio's
own loop instead (so does a missing uvloop); any other value is an error.
Plugins forked by the daemon (daemon/forkspawn.py) read the variable again
from the environment they are given, so they run on the daemon's choice.

The one difference between the loops that berthd ran into: uvloop's
``subprocess_exec`` leaves the child our descriptors, which hung ``ctr run``
(issue #14).  Processes are therefore started through
services/harness/spawn.py, never through the loop's own subprocess support.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

VARIABLE = "BERTHD_EVENT_LOOP"
CHOICES = ("uvloop", "asyncio")


def factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes the loop ``$BERTHD_EVENT_LOOP`` names (uvloop when unset).

    Raises ValueError naming the variable for a value that is not a loop.
    """
    choice = os.environ.get(VARIABLE, "") or "uvloop"
    if choice not in CHOICES:
        raise ValueError(f"{VARIABLE}={choice!r}: not one of {', '.join(CHOICES)}")
    if choice == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, on the loop ``factory`` makes."""
    try:
        make = factory()
    except ValueError:
        main.close()  # never awaited: no warning for it
        raise
    with asyncio.Runner(loop_factory=make) as runner:
        return runner.run(main)
