"""Writes relayed to the content backend without waiting for each answer.

A client's Write stream sends a message and waits for its answer before the
next one (containerd's remoteWriter does).  Relayed one by one, each message
would pay both hops in turn: the client waits while the daemon waits for the
content plugin.  ``PostedWriter`` answers a write as soon as it is handed to
the backend writer, and the backend writes it while the client sends the
next message.  At most one write is in flight: the next operation waits for
it first, and its error (a full disk, say) is that operation's error.  The
caller learns of a failed write one message late, or at commit, which waits
for every byte; what reached the backend stays in the ingest for a resume,
as before.

An answer carries the digest of everything written so far, so a write is
only posted when this writer can say what that digest is: it hashes what it
relays, from an ingest at offset 0 (a new one, or one truncated to 0).  A
resumed ingest's earlier bytes are the backend's to hash: its writes wait
for the backend's answers, as before.  At commit the two digests are
compared.

A new ingest need not wait for the backend to open it either
(``PostedWriter.opening``): its offset is 0 and every byte will be ours to
hash, so the first write is answered at once and reaches the backend behind
the opening; an error opening is the next operation's error, like a write's.

Someone else asking the backend for the ingest's status meanwhile must not
see it a write behind what its writer was told: ``settled`` lets them wait.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping

from api import errdefs
from services.content.store import Data, Status, Writer

log = logging.getLogger(__name__)


class PostedWriter:
    """``Writer`` over ``inner`` whose writes are answered before ``inner`` has
    answered them (see the module doc)."""

    def __init__(self, inner: Writer, on_finish: Callable[[], None] | None = None) -> None:
        self._inner: Writer | None = inner
        self._ref = inner.ref
        self._on_finish = on_finish
        self._pending: asyncio.Future[None] | None = None
        # The opening still in flight (``opening``): a write may follow it
        # without waiting, as the one write in flight.
        self._opening: asyncio.Future[None] | None = None
        # The hash of every byte of the ingest, once known to start at 0;
        # None while unknown or when this writer cannot vouch for it.
        self._hasher: hashlib._Hash | None = None
        self._decided = False

    @classmethod
    def opening(
        cls, ref: str, inner: Awaitable[Writer], on_finish: Callable[[], None] | None = None
    ) -> PostedWriter:
        """The writer of the new ingest ``ref`` (at offset 0) that ``inner``
        opens on the backend; its operations wait for the opening only when
        they must."""
        w = cls.__new__(cls)
        w._inner, w._ref, w._on_finish = None, ref, on_finish
        w._hasher, w._decided = hashlib.sha256(), True
        w._pending = w._opening = asyncio.ensure_future(w._open(inner))
        return w

    async def _open(self, inner: Awaitable[Writer]) -> None:
        self._inner = await inner

    def _backend(self) -> Writer:
        """The backend writer; only once settled."""
        if self._inner is None:
            raise errdefs.FailedPrecondition(f"ref {self._ref}: the content store did not open it")
        return self._inner

    @property
    def ref(self) -> str:
        return self._ref

    async def settled(self) -> None:
        """Return once no write is in flight; its error is left for this
        writer's next operation."""
        pending = self._pending
        if pending is not None:
            await asyncio.wait({pending})

    async def opened(self) -> None:
        """Return once the backend writer is open (or failed to open: the
        error is left for this writer's next operation)."""
        opening = self._opening
        if opening is not None:
            await asyncio.wait({opening})
        elif self._inner is None and self._pending is not None:
            # The opening is behind the write in flight.
            await asyncio.wait({self._pending})

    def _finished(self) -> None:
        if self._on_finish is not None:
            on_finish, self._on_finish = self._on_finish, None
            on_finish()

    async def _settle(self) -> None:
        """Wait for the write in flight; its error is raised here (once)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            await pending
        except BaseException:
            # The backend has an unknown part of the bytes: its digest rules.
            self._hasher = None
            raise

    async def status(self) -> Status:
        await self._settle()
        st = await self._backend().status()
        if not self._decided:
            self._decided = True
            if st.offset == 0:
                self._hasher = hashlib.sha256()
        return st

    def digest(self) -> str:
        if self._hasher is not None:
            return f"sha256:{self._hasher.hexdigest()}"
        return "" if self._inner is None else self._inner.digest()

    async def write(self, data: Data) -> int:
        opening = self._opening
        if opening is not None and self._pending is opening and data and not opening.done():
            # Behind the opening: answered now, written once it is open.
            self._opening = None
        else:
            opening = None
            await self._settle()
        if not self._decided:
            await self.status()
        if self._hasher is None or not data:
            return await self._backend().write(data)
        self._hasher.update(data)
        self._pending = asyncio.ensure_future(self._post(data, opening))
        return len(data)

    async def _post(self, data: Data, after: asyncio.Future[None] | None = None) -> None:
        if after is not None:
            await after
        n = await self._backend().write(data)
        if n != len(data):
            raise errdefs.DataLoss(f"ref {self.ref}: wrote {n} of {len(data)} bytes")

    async def truncate(self, size: int) -> None:
        await self._settle()
        await self._backend().truncate(size)
        if size == 0:
            self._hasher, self._decided = hashlib.sha256(), True

    async def commit(
        self, size: int = 0, expected: str = "", labels: Mapping[str, str] | None = None
    ) -> str:
        try:
            await self._settle()
            inner = self._backend()
            ours, theirs = self.digest(), inner.digest()
            if self._hasher is not None and theirs and theirs != ours:
                raise errdefs.DataLoss(
                    f"ref {self.ref}: relayed bytes hash to {ours}, the content store has {theirs}"
                )
        except BaseException:
            self._finished()
            if self._inner is not None:
                await self._inner.close()
            raise
        try:
            return await inner.commit(size, expected, labels)
        finally:
            self._finished()

    async def close(self) -> None:
        try:
            await self._settle()
        except Exception as e:
            # What reached the backend stays in the ingest; the caller has
            # gone (or is failing for its own reason) and learns this on resume.
            log.debug("ref %s: a relayed write failed before close: %s", self.ref, e)
        self._finished()
        if self._inner is not None:
            await self._inner.close()
