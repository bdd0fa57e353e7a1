"""Read-ahead for small reads of blobs relayed to the content backend.

containerd's ReaderAt client (``ctr content get``, anything reading through
``content.ReaderAt``) sends one Read per 32 KiB.  Relayed one by one to the
content plugin, each pays a second RPC (and an Info to open the blob);
through this cache one plugin read of a ``WINDOW`` answers the next 32 calls,
and the window after it is fetched while those are served.

Blobs are immutable and named by their digest, so a window read for one
caller is right for every caller: whether the caller may see the blob at all
is the metadata's question, asked on every read before this cache.  Memory is
bounded (``MAX_WINDOWS``) and given back once reads stop (``IDLE``).  Reads
larger than a window, and whole-blob streams, bypass the cache on a backend
reader of their own.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from collections.abc import AsyncIterator

from api import errdefs
from services.content.store import READ_CHUNK, ContentStore, ReaderAt
from services.harness import memory

log = logging.getLogger(__name__)

WINDOW = 4 << 20
MAX_WINDOWS = 6
# Seconds without a read before the windows are dropped: less than the heap
# keeper's quiet time, so that its trim after a burst gives their pages back.
IDLE = memory.QUIET / 2

_Key = tuple[str, int]  # digest, window index


class ReadAhead:
    """Windows of blobs recently read in small pieces, over ``backend``."""

    def __init__(
        self,
        backend: ContentStore,
        *,
        window: int = WINDOW,
        max_windows: int = MAX_WINDOWS,
        idle: float = IDLE,
    ) -> None:
        self.backend = backend
        self.window = window
        self.max_windows = max_windows
        self.idle = idle
        self._windows: collections.OrderedDict[_Key, asyncio.Future[bytes]] = (
            collections.OrderedDict()
        )
        self._readers: dict[str, ReaderAt] = {}
        self._expiry: asyncio.TimerHandle | None = None
        self._last = 0.0
        self._closing: set[asyncio.Future[None]] = set()

    def reader(self, digest: str, size: int) -> CachedReader:
        """A ReaderAt of ``digest`` (``size`` bytes, as the metadata records it)."""
        return CachedReader(self, digest, size)

    # --- the cache --------------------------------------------------------------

    async def _backend_reader(self, digest: str) -> ReaderAt:
        ra = self._readers.get(digest)
        if ra is None:
            ra = await self.backend.reader(digest)
            old = self._readers.setdefault(digest, ra)
            if old is not ra:
                await ra.close()
                ra = old
        return ra

    async def _fetch(self, digest: str, index: int, size: int) -> bytes:
        start = index * self.window
        n = min(self.window, size - start)
        ra = await self._backend_reader(digest)
        return await ra.read_at(start, n)

    def _window(self, digest: str, index: int, size: int) -> asyncio.Future[bytes]:
        key = (digest, index)
        fut = self._windows.get(key)
        if fut is not None:
            self._windows.move_to_end(key)
            return fut
        fut = asyncio.ensure_future(self._fetch(digest, index, size))
        self._windows[key] = fut
        fut.add_done_callback(functools.partial(self._fetched, key))
        while len(self._windows) > self.max_windows:
            # Dropped, not cancelled: whoever awaits it still gets its bytes.
            self._windows.popitem(last=False)
        self._touch()
        return fut

    def _fetched(self, key: _Key, fut: asyncio.Future[bytes]) -> None:
        # A failed read is not cached: the next caller tries again.
        if (fut.cancelled() or fut.exception() is not None) and self._windows.get(key) is fut:
            del self._windows[key]

    def _touch(self) -> None:
        loop = asyncio.get_running_loop()
        self._last = loop.time()
        if self._expiry is None:
            self._expiry = loop.call_later(self.idle, self._expire)

    def _expire(self) -> None:
        self._expiry = None
        loop = asyncio.get_running_loop()
        quiet = loop.time() - self._last
        if quiet < self.idle:
            self._expiry = loop.call_later(self.idle - quiet, self._expire)
            return
        if any(not fut.done() for fut in self._windows.values()):
            self._touch()  # a read is still under way: its callers wait for it
            return
        self._windows.clear()
        readers, self._readers = self._readers, {}
        for ra in readers.values():
            task = asyncio.ensure_future(_close_quietly(ra))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def read(self, digest: str, size: int, offset: int, n: int) -> bytes:
        """``n`` bytes at ``offset`` (fewer at the end), from windows."""
        end = min(size, offset + n)
        parts = []
        pos = offset
        while pos < end:
            index = pos // self.window
            # Shielded: a caller that goes away must not cancel a window
            # that other callers (or the next read) are waiting for.
            fut = self._window(digest, index, size)
            data = fut.result() if fut.done() else await asyncio.shield(fut)
            lo = pos - index * self.window
            hi = min(len(data), end - index * self.window)
            if hi <= lo:
                raise errdefs.DataLoss(f"content {digest}: short read at {pos} of {size}")
            parts.append(data[lo:hi])
            pos += hi - lo
            # Half-way through a window: fetch the next one meanwhile.
            nxt = index + 1
            if lo + (hi - lo) >= self.window // 2 and nxt * self.window < size:
                self._window(digest, nxt, size)
        self._touch()
        return parts[0] if len(parts) == 1 else b"".join(parts)


async def _close_quietly(ra: ReaderAt) -> None:
    try:
        await ra.close()
    except Exception as e:
        log.debug("closing a cached content reader: %s", e)


class CachedReader(ReaderAt):
    """A ReaderAt whose small reads go through the ReadAhead windows."""

    def __init__(self, cache: ReadAhead, digest: str, size: int) -> None:
        self._cache = cache
        self._digest = digest
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    def _check(self, offset: int) -> None:
        if offset > self._size:
            raise errdefs.OutOfRange(f"read past object length {self._size} bytes")

    async def read_at(self, offset: int, n: int) -> bytes:
        self._check(offset)
        if n <= 0 or offset == self._size:
            return b""
        if n > self._cache.window:
            async with await self._cache.backend.reader(self._digest) as ra:
                return await ra.read_at(offset, n)
        return await self._cache.read(self._digest, self._size, offset, n)

    async def chunks(
        self, offset: int = 0, size: int = 0, chunk: int = READ_CHUNK
    ) -> AsyncIterator[bytes]:
        self._check(offset)
        if 0 < size <= self._cache.window:
            data = await self.read_at(offset, size)
            for i in range(0, len(data), chunk):
                yield data[i : i + chunk]
            return
        # A stream of its own: a large read gains nothing from the windows.
        async with await self._cache.backend.reader(self._digest) as ra:
            async for data in ra.chunks(offset, size, chunk):
                yield data

    async def close(self) -> None:
        return None


__all__ = ["IDLE", "MAX_WINDOWS", "WINDOW", "CachedReader", "ReadAhead"]
