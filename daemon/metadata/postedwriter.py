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
from typing import Protocol, runtime_checkable

from api import errdefs
from services.content.store import Data, Status, Writer

log = logging.getLogger(__name__)


@runtime_checkable
class AnsweredLater(Protocol):
    """A backend writer whose opening request may still be unanswered when
    it is handed over (``ProxyContentStore.start_writer``'s)."""

    async def answered(self) -> None:
        """Return once the backend has acted on the opening; raises its error."""
        ...


class PostedWriter:
    """``Writer`` over ``inner`` whose writes are answered before ``inner`` has
    answered them (see the module doc)."""

    def __init__(self, inner: Writer, on_finish: Callable[[], None] | None = None) -> None:
        self._setup(inner.ref, inner, on_finish)

    def _setup(self, ref: str, inner: Writer | None, on_finish: Callable[[], None] | None) -> None:
        self._inner = inner
        self._ref = ref
        self._on_finish = on_finish
        self._pending: asyncio.Future[None] | None = None
        # A new ingest's opening (``opening``): done once the backend holds
        # the ingest (or failed to open it); ``_sent`` is done once the
        # opening request is on its way, which is all a first write waits for.
        self._opening: asyncio.Future[None] | None = None
        self._sent: asyncio.Future[None] | None = None
        # The hash of every byte of the ingest, once known to start at 0;
        # None while unknown or when this writer cannot vouch for it.
        self._hasher: hashlib._Hash | None = None
        self._decided = False

    @classmethod
    def opening(
        cls,
        ref: str,
        inner: Awaitable[Writer],
        on_finish: Callable[[], None] | None = None,
        on_failed: Callable[[], Awaitable[None]] | None = None,
    ) -> PostedWriter:
        """The writer of the new ingest ``ref`` (at offset 0) that ``inner``
        opens on the backend; its operations wait for the opening only when
        they must.  ``on_failed`` runs when the backend does not open it,
        before anyone learns so."""
        w = cls.__new__(cls)
        w._setup(ref, None, on_finish)
        # Offset 0: every byte will be ours to hash.
        w._hasher, w._decided = hashlib.sha256(), True
        w._sent = asyncio.get_running_loop().create_future()
        w._opening = asyncio.ensure_future(w._open(inner, w._sent, on_failed))
        return w

    async def _open(
        self,
        inner: Awaitable[Writer],
        sent: asyncio.Future[None],
        on_failed: Callable[[], Awaitable[None]] | None,
    ) -> None:
        try:
            try:
                self._inner = writer = await inner
            finally:
                sent.set_result(None)
            if isinstance(writer, AnsweredLater):
                await writer.answered()
        except Exception:
            if on_failed is not None:
                await on_failed()
            raise

    def _backend(self) -> Writer:
        """The backend writer; only once settled."""
        if self._inner is None:
            raise errdefs.FailedPrecondition(f"ref {self._ref}: the content store did not open it")
        return self._inner

    @property
    def ref(self) -> str:
        return self._ref

    def _in_flight(self) -> set[asyncio.Future[None]]:
        return {f for f in (self._opening, self._pending) if f is not None}

    async def settled(self) -> None:
        """Return once the backend holds the ingest and no write is in flight;
        their errors are left for this writer's next operation."""
        if flying := self._in_flight():
            await asyncio.wait(flying)

    async def opened(self) -> None:
        """Return once the backend holds the ingest (or failed to open it: the
        error is left for this writer's next operation)."""
        if self._opening is not None:
            await asyncio.wait({self._opening})

    def _finished(self) -> None:
        if self._on_finish is not None:
            on_finish, self._on_finish = self._on_finish, None
            on_finish()

    async def _settle(self) -> None:
        """Wait for the opening and the write in flight; the first error is
        raised here (once).  They are forgotten only once done, so that
        ``settled`` and ``opened`` meanwhile wait for them too."""
        error: Exception | None = None
        for fut in (self._opening, self._pending):
            if fut is None:
                continue
            try:
                # Shielded: a caller who gives up does not stop the backend's work.
                await asyncio.shield(fut)
            except Exception as e:
                error = error or e
        if self._opening is not None and self._opening.done():
            self._opening = None
        if self._pending is not None and self._pending.done():
            self._pending = None
        if error is not None:
            # The backend has an unknown part of the bytes: its digest rules.
            self._hasher = None
            raise error

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
        sent = self._sent
        if sent is not None and data and self._pending is None and self._opening is not None:
            # The first write of a new ingest: answered now, and sent once
            # the opening request is (the backend answers them in order).
            self._sent = None
        else:
            sent = None
            await self._settle()
        if not self._decided:
            await self.status()
        if self._hasher is None or not data:
            return await self._backend().write(data)
        self._hasher.update(data)
        self._pending = asyncio.ensure_future(self._post(data, sent))
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
