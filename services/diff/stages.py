"""Running pipeline stages on their own threads and awaiting them from the loop.

Each stage gets a dedicated thread (not a pool slot: a pool shared by many
layers could fill with producers whose consumers wait for a free slot, and
deadlock).  When a stage fails, ``on_error`` runs at once on its thread so
the other stages are aborted and stop; ``root_cause`` then picks the error
worth reporting - the first one that is not a mere ``Aborted``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from api import errdefs
from services.diff.channel import Aborted

T = TypeVar("T")


def start(
    fn: Callable[[], T], name: str, on_error: Callable[[BaseException], None]
) -> asyncio.Future[T]:
    """Run ``fn`` on a new thread; the future resolves with its result or exception."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if fut.done():
            return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result = fn()
        except BaseException as e:
            on_error(e)
            loop.call_soon_threadsafe(settle, None, e)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=run, name=name, daemon=True).start()
    return fut


async def wait_all(futures: Sequence[asyncio.Future[Any]], on_cancel: Callable[[], None]) -> None:
    """Wait for every stage; if the caller is cancelled, stop them and still wait.

    Raises the root cause when any stage failed.
    """
    gathered = asyncio.gather(*futures, return_exceptions=True)
    try:
        results = await asyncio.shield(gathered)
    except asyncio.CancelledError:
        on_cancel()
        # Threads must be finished before the caller unmounts what they write to.
        await asyncio.wait(futures)
        raise
    error = root_cause(results)
    if error is not None:
        raise error


def root_cause(results: Sequence[object]) -> BaseException | None:
    errors = [r for r in results if isinstance(r, BaseException)]
    for e in errors:
        if not isinstance(e, Aborted):
            return e
    if errors:
        return errdefs.Aborted("pipeline aborted without a cause")
    return None
