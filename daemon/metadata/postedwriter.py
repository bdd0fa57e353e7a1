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

Someone else asking the backend for the ingest's status meanwhile must not
see it a write behind what its writer was told: ``settled`` lets them wait.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Mapping

from api import errdefs
from services.content.store import Status, Writer

log = logging.getLogger(__name__)


class PostedWriter:
    """``Writer`` over ``inner`` whose writes are answered before ``inner`` has
    answered them (see the module doc)."""

    def __init__(self, inner: Writer, on_finish: Callable[[], None] | None = None) -> None:
        self._inner = inner
        self._on_finish = on_finish
        self._pending: asyncio.Future[None] | None = None
        # The hash of every byte of the ingest, once known to start at 0;
        # None while unknown or when this writer cannot vouch for it.
        self._hasher: hashlib._Hash | None = None
        self._decided = False

    @property
    def ref(self) -> str:
        return self._inner.ref

    async def settled(self) -> None:
        """Return once no write is in flight; its error is left for this
        writer's next operation."""
        pending = self._pending
        if pending is not None:
            await asyncio.wait({pending})

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
        st = await self._inner.status()
        if not self._decided:
            self._decided = True
            if st.offset == 0:
                self._hasher = hashlib.sha256()
        return st

    def digest(self) -> str:
        if self._hasher is not None:
            return f"sha256:{self._hasher.hexdigest()}"
        return self._inner.digest()

    async def write(self, data: bytes) -> int:
        await self._settle()
        if not self._decided:
            await self.status()
        if self._hasher is None or not data:
            return await self._inner.write(data)
        self._hasher.update(data)
        self._pending = asyncio.ensure_future(self._post(data))
        return len(data)

    async def _post(self, data: bytes) -> None:
        n = await self._inner.write(data)
        if n != len(data):
            raise errdefs.DataLoss(f"ref {self.ref}: wrote {n} of {len(data)} bytes")

    async def truncate(self, size: int) -> None:
        await self._settle()
        await self._inner.truncate(size)
        if size == 0:
            self._hasher, self._decided = hashlib.sha256(), True

    async def commit(
        self, size: int = 0, expected: str = "", labels: Mapping[str, str] | None = None
    ) -> str:
        try:
            await self._settle()
            ours, theirs = self.digest(), self._inner.digest()
            if self._hasher is not None and theirs and theirs != ours:
                raise errdefs.DataLoss(
                    f"ref {self.ref}: relayed bytes hash to {ours}, the content store has {theirs}"
                )
        except BaseException:
            self._finished()
            await self._inner.close()
            raise
        try:
            return await self._inner.commit(size, expected, labels)
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
        await self._inner.close()
