"""Fetch one blob from the nodes that hold it into the local content store.

``PeerFetcher.fetch(digest, size, holders)`` streams the blob from the first
holder that answers, hashing it as it arrives, and writes it through the
local store's normal ingest (``fetch_ref(digest)``), which commits it
atomically with the expected size and digest.  When a holder fails in the
middle (it died, its stream broke or stalled), the transfer continues from
the next holder at the current offset (Content Read takes an offset), so
bytes already received are not fetched again.  When no holder can finish
it, or the bytes do not hash to the digest, the ingest is aborted: nothing
partial is left behind.

Concurrent fetches of one digest on a node share one transfer: the first
caller starts it, the others wait for its outcome.  The transfer runs in a
task of its own, so a caller that gives up does not cancel it for the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence

from api import errdefs
from daemon.peer.index import Holder
from daemon.peer.metrics import FAILED, OK, PeerMetrics
from services.content.store import ContentStore, Writer
from services.content.validation import split_digest

log = logging.getLogger(__name__)

# A holder that sends nothing for this long is given up on for the next one.
STALL_TIMEOUT = 10.0
# Received bytes are written to the local store in batches of about this size,
# while up to this many more chunks are received.
WRITE_BATCH = 4 << 20
RECEIVE_AHEAD = 16

Dial = Callable[[str], ContentStore]


def fetch_ref(digest: str) -> str:
    """The local ingest a fetch of ``digest`` writes through."""
    return f"peer-fetch-{digest}"


class _HolderFailed(Exception):
    """One holder could not continue (the next one may), after ``offset`` bytes."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset

    def __str__(self) -> str:
        return self.reason


class _Sink:
    """Hashes what arrives and writes it to the local ingest in batches."""

    def __init__(self, writer: Writer, algorithm: str) -> None:
        self.writer = writer
        self.hasher = hashlib.new(algorithm)
        self.buffer = bytearray()

    async def put(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= WRITE_BATCH:
            await self.flush()

    async def flush(self) -> None:
        if not self.buffer:
            return
        data, self.buffer = bytes(self.buffer), bytearray()
        # hashlib drops the GIL on large buffers: hash in a thread while the
        # store writes.
        hashed = asyncio.ensure_future(asyncio.to_thread(self.hasher.update, data))
        try:
            n = await self.writer.write(data)
        finally:
            await hashed
        if n != len(data):
            raise errdefs.DataLoss(f"local store took {n} of {len(data)} bytes")


class PeerFetcher:
    """``PeerFetcher(store, dial)``: ``dial(address)`` is a peer's content store."""

    def __init__(
        self,
        store: ContentStore,
        dial: Dial,
        metrics: PeerMetrics | None = None,
        *,
        stall_timeout: float = STALL_TIMEOUT,
    ) -> None:
        self.store = store
        self.dial = dial
        self.metrics = metrics
        self.stall_timeout = stall_timeout
        self._inflight: dict[str, asyncio.Task[None]] = {}

    def in_flight(self) -> list[str]:
        return list(self._inflight)

    async def fetch(self, digest: str, size: int, holders: Sequence[Holder]) -> None:
        """Make the local store hold ``digest`` (``size`` bytes), from ``holders`` in order.

        Returns at once when it is already there.  Raises InvalidArgument for
        a malformed digest, Unavailable when no holder could serve it (the
        reasons named), DataLoss when the bytes do not hash to ``digest``.
        """
        split_digest(digest)
        task = self._inflight.get(digest)
        if task is None:
            task = asyncio.create_task(
                self._run(digest, size, tuple(holders)), name=f"peer-fetch {digest}"
            )
            self._inflight[digest] = task
            task.add_done_callback(lambda t: self._done(digest, t))
        await asyncio.shield(task)

    def _done(self, digest: str, task: asyncio.Task[None]) -> None:
        if self._inflight.get(digest) is task:
            del self._inflight[digest]
        if not task.cancelled():
            task.exception()  # retrieved here: every waiter may have given up

    async def close(self) -> None:
        """Cancel the transfers under way (their ingests are aborted)."""
        tasks = list(self._inflight.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, digest: str, size: int, holders: tuple[Holder, ...]) -> None:
        start = time.perf_counter()
        result = FAILED
        try:
            await self._transfer(digest, size, holders)
            result = OK
        finally:
            if self.metrics is not None:
                self.metrics.fetches.labels(result).inc()
                self.metrics.fetch_seconds.labels(result).observe(time.perf_counter() - start)

    async def _present(self, digest: str, size: int) -> bool:
        try:
            info = await self.store.info(digest)
        except errdefs.NotFound:
            return False
        if info.size != size:
            raise errdefs.FailedPrecondition(
                f"content {digest}: the local store holds {info.size} bytes, expected {size}"
            )
        return True

    async def _transfer(self, digest: str, size: int, holders: tuple[Holder, ...]) -> None:
        if await self._present(digest, size):
            return
        if not holders:
            raise errdefs.Unavailable(f"content {digest}: no live node holds it")
        algorithm, hexdigest = split_digest(digest)
        ref = fetch_ref(digest)
        try:
            writer = await self.store.writer(ref, size, digest)
        except errdefs.AlreadyExists:
            return
        done = False
        try:
            if (await writer.status()).offset:
                await writer.truncate(0)  # a fetch interrupted by a crash: start over
            sink = _Sink(writer, algorithm)
            await self._copy(digest, size, holders, sink)
            await sink.flush()
            got = sink.hasher.hexdigest()
            if got != hexdigest:
                raise errdefs.DataLoss(
                    f"content {digest}: the bytes received from peers hash to {algorithm}:{got}"
                )
            with contextlib.suppress(errdefs.AlreadyExists):
                await writer.commit(size, digest)
            done = True
            log.info("content %s: fetched %d bytes from peers", digest, size)
        finally:
            if not done:
                await self._discard(writer, ref)

    async def _discard(self, writer: Writer, ref: str) -> None:
        with contextlib.suppress(Exception):
            await writer.close()
        try:
            await self.store.abort(ref)
        except errdefs.NotFound:
            pass
        except Exception as e:  # the collector removes it later
            log.warning("ingest %s: abort after a failed fetch failed: %s", ref, e)

    async def _copy(self, digest: str, size: int, holders: tuple[Holder, ...], sink: _Sink) -> None:
        offset = 0
        failures = []
        for holder in holders:
            if offset:
                log.info(
                    "content %s: resuming at %d of %d bytes from %s (%s)",
                    digest,
                    offset,
                    size,
                    holder.node,
                    holder.address,
                )
                if self.metrics is not None:
                    self.metrics.resumed.inc()
            try:
                offset = await self._from(holder, digest, size, offset, sink)
            except _HolderFailed as e:
                failures.append(f"{holder.node} at {holder.address}: {e}")
                log.warning(
                    "content %s: holder %s failed at %d: %s", digest, holder.node, offset, e
                )
                offset = e.offset
                continue
            return
        raise errdefs.Unavailable(
            f"content {digest}: no holder could serve it ({'; '.join(failures)})"
        )

    async def _from(self, holder: Holder, digest: str, size: int, offset: int, sink: _Sink) -> int:
        """Copy from ``holder`` from ``offset`` to the end; returns ``size``.

        The holder's stream is received into a bounded queue while the local
        store writes what came before.  Raises _HolderFailed(reason, offset
        reached) when the holder cannot go on; errors of the local store
        propagate.
        """
        queue: asyncio.Queue[bytes | str | None] = asyncio.Queue(RECEIVE_AHEAD)
        pump = asyncio.create_task(self._receive(holder, digest, size, offset, queue))
        try:
            while offset < size:
                item = await queue.get()
                if item is None:
                    raise _HolderFailed(f"stream ended after {offset} bytes", offset)
                if isinstance(item, str):
                    raise _HolderFailed(item, offset)
                if offset + len(item) > size:
                    raise _HolderFailed(f"sent more than {size} bytes", offset)
                await sink.put(item)
                offset += len(item)
                if self.metrics is not None:
                    self.metrics.fetched.inc(len(item))
            return offset
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    async def _receive(
        self,
        holder: Holder,
        digest: str,
        size: int,
        offset: int,
        queue: asyncio.Queue[bytes | str | None],
    ) -> None:
        """Put the holder's chunks from ``offset`` on ``queue``, then None; the
        reason as a str when the holder fails or stalls."""
        chunks: AsyncIterator[bytes] | None = None
        try:
            peer = self.dial(holder.address)
            async with asyncio.timeout(self.stall_timeout):
                reader = await peer.reader(digest)
            if reader.size != size:
                raise errdefs.FailedPrecondition(f"holds {reader.size} bytes, expected {size}")
            chunks = aiter(reader.chunks(offset))
            while True:
                async with asyncio.timeout(self.stall_timeout):
                    data = await anext(chunks, None)
                await queue.put(data)
                if data is None:
                    return
        except (errdefs.ErrdefsError, TimeoutError) as e:
            await queue.put(_why(e, self.stall_timeout))
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()


def _why(e: BaseException, stall: float) -> str:
    if isinstance(e, TimeoutError):
        return f"no answer for {stall:g}s"
    return str(e)
