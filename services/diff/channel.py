"""A bounded pipe of byte chunks between threads and an event loop.

Apply and diff run as pipelines (fetch -> decompress -> extract, walk ->
compress -> upload) whose stages live on different threads or on the loop.
A ``Channel`` carries chunks between two stages, holds at most ``limit``
bytes so a fast producer waits for a slow consumer, and can be aborted from
either side so that no stage is left blocked when another one fails.  The
loop side waits on futures, never on a thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import Callable


class Aborted(Exception):
    """The pipeline stopped because another stage failed; that stage's error is the cause."""


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Channel:
    def __init__(self, limit: int = 8 << 20) -> None:
        self._limit = limit
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._closed = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    # -- both sides ---------------------------------------------------------

    def abort(self, error: BaseException | None = None) -> None:
        """Fail every current and later put/get with ``error`` (Aborted by default)."""
        with self._cond:
            if self._error is None:
                self._error = error if error is not None else Aborted("pipeline aborted")
            self._chunks.clear()
            self._size = 0
            self._notify()

    @property
    def error(self) -> BaseException | None:
        return self._error

    def _notify(self) -> None:
        self._cond.notify_all()
        waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            # RuntimeError: the loop is closed, nobody waits any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake, fut)

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    # -- producer -----------------------------------------------------------

    def _try_put(self, chunk: bytes) -> bool:
        self._check()
        if self._closed:
            raise RuntimeError("put on a closed channel")
        # An empty channel takes any chunk, so a chunk above the limit still passes.
        if self._chunks and self._size + len(chunk) > self._limit:
            return False
        self._chunks.append(chunk)
        self._size += len(chunk)
        self._notify()
        return True

    def put(self, chunk: bytes) -> None:
        """Append ``chunk``, waiting while the channel is full (threads)."""
        if not chunk:
            return
        with self._cond:
            while not self._try_put(chunk):
                self._cond.wait()

    async def aput(self, chunk: bytes) -> None:
        """Append ``chunk``, waiting while the channel is full (event loop)."""
        if not chunk:
            return
        await self._await(lambda: self._try_put(chunk))

    def close(self) -> None:
        """End of data: the consumer gets b"" once the chunks are read."""
        with self._cond:
            self._closed = True
            self._notify()

    # -- consumer -----------------------------------------------------------

    def _try_get(self) -> bytes | None:
        if self._chunks:
            chunk = self._chunks.popleft()
            self._size -= len(chunk)
            self._notify()
            return chunk
        self._check()
        if self._closed:
            return b""
        return None

    def get(self) -> bytes:
        """The next chunk, b"" at the end (threads)."""
        with self._cond:
            while True:
                chunk = self._try_get()
                if chunk is not None:
                    return chunk
                self._cond.wait()

    def get_nowait(self) -> bytes | None:
        """The next chunk if one is waiting, else None (also at the end)."""
        with self._cond:
            chunk = self._try_get()
            return chunk or None

    async def aget(self) -> bytes:
        """The next chunk, b"" at the end (event loop)."""
        result: list[bytes] = []

        def attempt() -> bool:
            chunk = self._try_get()
            if chunk is None:
                return False
            result.append(chunk)
            return True

        await self._await(attempt)
        return result[0]

    async def _await(self, attempt: Callable[[], bool]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                if attempt():
                    return
                fut: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, fut))
            await fut
