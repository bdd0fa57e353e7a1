"""What both ends of a ttrpc connection share: frame I/O and per-stream inboxes.

``FrameProtocol`` is an asyncio protocol that cuts the byte stream into
frames and hands each to ``frame_received``; a frame that arrived whole in
one read is sliced straight out of it, only partial frames are buffered.  A
frame over the size limit is not buffered at all: its header is reported to
``oversize_received`` and its body skipped, as ttrpc does, so the connection
stays usable.

``Inbox`` queues the messages of one stream for its consumer.  When a
consumer falls ``INBOX_LIMIT`` messages behind, reading from the connection
pauses for up to ``STREAM_FULL_WAIT`` seconds; if the consumer still has not
caught up, that stream alone is failed and reading resumes (ttrpc's
ErrStreamFull), so one stuck stream cannot stall the others for long.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Generic, TypeVar, cast

from api import errdefs
from api.ttrpc.framing import HEADER, HEADER_SIZE, oversize_error
from api.ttrpc.status import ConnectionClosed

T = TypeVar("T")

INBOX_LIMIT = 64
STREAM_FULL_WAIT = 1.0


class Inbox(Generic[T]):
    """Messages received on one stream, in order, then an end (EOF or an error)."""

    __slots__ = ("_conn", "_done", "_error", "_items", "_waiter")

    def __init__(self, conn: FrameProtocol) -> None:
        self._conn = conn
        self._items: collections.deque[T] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._done = False
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self._done

    def put(self, item: T) -> None:
        if self._done:
            return
        self._items.append(item)
        self._wake()
        if len(self._items) >= INBOX_LIMIT:
            self._conn.hold(self)

    def finish(self, error: BaseException | None = None, *, drop: bool = False) -> None:
        """No more items; ``get`` returns what is queued (unless ``drop``), then None or raises.

        After a plain finish, a dropping one still discards the queue and, if
        the first carried no error, sets its error.
        """
        if self._done:
            if drop:
                self._items.clear()
                if self._error is None:
                    self._error = error
                self._conn.release(self)
            return
        self._done = True
        self._error = error
        if drop:
            self._items.clear()
        self._conn.release(self)
        self._wake()

    async def get(self) -> T | None:
        while not self._items:
            if self._done:
                if self._error is not None:
                    raise self._error
                return None
            waiter = self._waiter = self._conn.loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        item = self._items.popleft()
        if len(self._items) < INBOX_LIMIT:
            self._conn.release(self)
        return item

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class FrameProtocol(asyncio.Protocol):
    """Frame reading and writing over one stream transport (a unix socket)."""

    def __init__(self, max_message_size: int, name: str) -> None:
        if max_message_size <= 0:
            raise errdefs.InvalidArgument(f"max_message_size must be positive: {max_message_size}")
        self.loop = asyncio.get_running_loop()
        self.name = name  # the peer, for messages
        self.max_message_size = max_message_size
        self.transport: asyncio.Transport | None = None
        self.closed: ConnectionClosed | None = None  # set once the connection is gone
        self._buf = bytearray()
        self._discard = 0
        self._held_by: Inbox[object] | None = None
        self._hold_timer: asyncio.TimerHandle | None = None
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []

    # -- subclass interface ---------------------------------------------------

    def frame_received(self, stream_id: int, mtype: int, flags: int, data: bytes) -> None:
        raise NotImplementedError

    def oversize_received(self, stream_id: int, mtype: int, flags: int, length: int) -> None:
        raise NotImplementedError

    def stream_full(self, inbox: Inbox[object]) -> None:
        """``inbox``'s consumer did not catch up in time; fail its stream."""
        raise NotImplementedError

    def lost(self, error: ConnectionClosed) -> None:
        """The connection is gone; fail or cancel everything pending on it."""
        raise NotImplementedError

    # -- writing --------------------------------------------------------------

    def send(self, stream_id: int, mtype: int, flags: int, data: bytes) -> None:
        """Write one frame; refuses (ResourceExhausted) a message over the limit, as ttrpc does."""
        if self.closed is not None:
            raise self.closed_error()
        if len(data) > self.max_message_size:
            raise oversize_error(len(data), self.max_message_size)
        assert self.transport is not None
        self.transport.write(HEADER.pack(len(data), stream_id, mtype, flags) + data)

    async def drain(self) -> None:
        """Wait while the peer is not reading (the transport's write buffer is full)."""
        if self.closed is not None:
            raise self.closed_error()
        if not self._write_paused:
            return
        waiter = self.loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def closed_error(self) -> ConnectionClosed:
        """A fresh error for one caller (one exception object per raise keeps tracebacks apart)."""
        message = self.closed.message if self.closed else f"ttrpc: {self.name}: closed"
        return ConnectionClosed(message)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- reading --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, whatever its class: uvloop's do not derive
        # from asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._discard:
            if len(data) <= self._discard:
                self._discard -= len(data)
                return
            data = data[self._discard :]
            self._discard = 0
        if self._buf or self._held_by is not None:
            self._buf += data
            self._parse_buffer()
            return
        used = self._parse(data)
        if used < len(data):
            self._buf += data[used:]

    def _parse_buffer(self) -> None:
        if self._held_by is not None or not self._buf:
            return
        with memoryview(self._buf) as view:
            used = self._parse(view)
        del self._buf[:used]

    def _parse(self, data: bytes | memoryview) -> int:
        """Deliver the whole frames at the start of ``data``; returns the bytes consumed."""
        size = len(data)
        pos = 0
        limit = self.max_message_size
        while size - pos >= HEADER_SIZE:
            length, stream_id, mtype, flags = HEADER.unpack_from(data, pos)
            end = pos + HEADER_SIZE + length
            if length > limit:
                if end > size:
                    self._discard = end - size
                    end = size
                self.oversize_received(stream_id, mtype, flags, length)
                pos = end
                continue
            if end > size:
                break
            self.frame_received(stream_id, mtype, flags, bytes(data[pos + HEADER_SIZE : end]))
            pos = end
            if self._held_by is not None or self.closed is not None:
                break
        return pos

    # -- inbound flow control -------------------------------------------------

    def hold(self, inbox: Inbox[T]) -> None:
        """Stop reading until ``inbox`` drains or STREAM_FULL_WAIT passes."""
        if self._held_by is not None or self.transport is None or self.closed is not None:
            return
        self._held_by = inbox  # type: ignore[assignment]
        self.transport.pause_reading()
        self._hold_timer = self.loop.call_later(STREAM_FULL_WAIT, self._hold_expired)

    def release(self, inbox: Inbox[T]) -> None:
        if self._held_by is not inbox:
            return
        self._unhold()

    def _hold_expired(self) -> None:
        inbox = self._held_by
        self._hold_timer = None
        self._unhold()
        if inbox is not None:
            self.stream_full(inbox)

    def _unhold(self) -> None:
        self._held_by = None
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        if self.transport is not None and self.closed is None:
            self.transport.resume_reading()
            self.loop.call_soon(self._parse_buffer)

    # -- end of the connection ------------------------------------------------

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        detail = f": {exc}" if exc else ""
        error = ConnectionClosed(f"ttrpc: connection to {self.name} closed{detail}")
        self.closed = error
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        self._held_by = None
        self._buf.clear()
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_exception(self.closed_error())
        self._drain_waiters = []
        self.lost(error)
