"""One HTTP/2 connection of ``api.h2``'s gRPC server, and its streams.

The protocol parses frames as bytes arrive and answers on the event loop's
thread: no completion queue, no poller thread, no hand-off per call.  Each
call runs its handler in one task; a unary call's response headers, message
and trailers leave in one write.

Flow control, both ways:
- sending, every DATA frame fits the peer's connection and stream windows
  and its largest frame size; a sender waits for WINDOW_UPDATE, and for the
  transport to drain when its buffer is full;
- receiving, the connection window is credited as bytes arrive; a stream's
  window is credited as bytes arrive while fewer than ``STREAM_WINDOW`` bytes
  of whole messages wait for its handler, later as the handler takes them
  (the back-pressure of a client-streaming call).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import TYPE_CHECKING, cast

import grpc

from api.h2 import frames as f
from api.h2 import hpack
from api.h2.context import Context, Metadata
from api.h2.stream import (
    CODE_INT,
    STREAM_STREAM,
    STREAM_UNARY,
    STREAM_WINDOW,
    Stream,
    StreamGone,
)

if TYPE_CHECKING:
    from api.h2.server import Server

log = logging.getLogger(__name__)

CONNECTION_WINDOW = 16 << 20
CREDIT_BATCH = 64 << 10

# Header blocks remembered per connection with what they said (see _request).
PARSED_BLOCKS = 64

# Request headers that are transport, not the caller's metadata.
_RESERVED = frozenset(
    ("content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "host")
)


class Connection(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer = "unix:"
        self.buf = bytearray()
        self.preface_seen = False
        self.decoder = hpack.Decoder()
        self.parsed: dict[bytes, tuple[int, str, float | None, Metadata]] = {}
        self.streams: dict[int, Stream] = {}
        self.last_sid = 0
        self.send_window = f.DEFAULT_WINDOW
        self.initial_send_window = f.DEFAULT_WINDOW
        self.max_frame = f.DEFAULT_MAX_FRAME
        self.conn_credit = 0
        self.stream_credit: dict[int, int] = {}
        self.held: dict[int, list[bytes | memoryview]] = {}
        self.header_block: bytearray | None = None
        self.header_sid = 0
        self.header_end_stream = False
        self.window_waiters: list[asyncio.Future[None]] = []
        self.drain_waiters: list[asyncio.Future[None]] = []
        self.paused = False
        self.lost = False
        self.going_away = False
        self.idle: asyncio.Future[None] | None = None
        self._out: list[bytes | memoryview] | None = None

    # ------------------------------------------------------------------ transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Any stream transport: uvloop's do not derive from asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        self.server.connections.add(self)
        ours = {
            f.SETTINGS_MAX_CONCURRENT_STREAMS: self.server.max_concurrent_streams,
            f.SETTINGS_INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            f.SETTINGS_MAX_HEADER_LIST_SIZE: 16 << 20,
        }
        grow = f.window_update(0, CONNECTION_WINDOW - f.DEFAULT_WINDOW)
        self.transport.write(f.settings(ours) + grow)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.server.connections.discard(self)
        for stream in list(self.streams.values()):
            stream.cancel()
        self._wake_windows()
        self._wake_drains()
        self._check_idle()

    def pause_writing(self) -> None:
        # A peer that does not read what it asked for gets no more answers
        # queued for it: its requests wait in the socket until it reads.
        self.paused = True
        if self.transport is not None and not self.lost:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if self.transport is not None and not self.lost:
            self.transport.resume_reading()
        self._wake_drains()

    def _wake_drains(self) -> None:
        waiters, self.drain_waiters = self.drain_waiters, []
        _wake(waiters)

    def write(self, data: bytes) -> None:
        if self.lost or self.transport is None:
            return
        if self._out is not None:  # inside data_received: one write at its end
            self._out.append(data)
        else:
            self.transport.write(data)

    def write_parts(self, parts: list[bytes | memoryview]) -> None:
        """Several pieces in one write (joined once; uvloop writes them with writev)."""
        if self.lost or self.transport is None or not parts:
            return
        if self._out is not None:
            self._out.extend(parts)
        else:
            self.transport.writelines(parts)

    async def drain(self) -> None:
        while self.paused and not self.lost:
            waiter = self.loop.create_future()
            self.drain_waiters.append(waiter)  # one each: several streams may wait
            await waiter

    def close(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.close()

    # ------------------------------------------------------------------ frames in

    def data_received(self, data: bytes) -> None:
        # Frames are cut from ``data`` itself when no partial frame is
        # pending (the usual case), else from ``buf``; DATA payloads are
        # handed on as views, copied once, into their stream's message.
        buf = self.buf
        if buf:
            buf += data
            src: bytes | bytearray = buf
        else:
            src = data
        pos = 0
        out: list[bytes | memoryview] = []
        self._out = out
        view = memoryview(src)
        try:
            if not self.preface_seen:
                if len(src) < len(f.PREFACE):
                    if not f.PREFACE.startswith(bytes(src)):
                        self._fail(f.PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                    elif not buf:
                        buf += data
                    return
                if not src.startswith(f.PREFACE):
                    self._fail(f.PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                    return
                self.preface_seen = True
                pos = len(f.PREFACE)
            size = len(src)
            while size - pos >= 9 and not self.lost:
                word, flags, sid = f.HEADER.unpack_from(src, pos)
                end = pos + 9 + (word >> 8)
                if end > size:
                    break
                kind = word & 0xFF
                if kind == f.DATA and self.header_block is None:
                    self._data(flags, sid & 0x7FFFFFFF, view[pos + 9 : end])
                else:
                    self._frame(kind, flags, sid & 0x7FFFFFFF, bytes(view[pos + 9 : end]))
                pos = end
            view.release()
            if src is buf:
                del buf[:pos]
            elif pos < size:
                buf += data[pos:]
            self._flush_credit()
        finally:
            view.release()
            self._out = None
            if out and self.transport is not None and not self.lost:
                self.transport.write(b"".join(out))

    def _frame(self, kind: int, flags: int, sid: int, payload: bytes) -> None:
        if self.header_block is not None and kind != f.CONTINUATION:
            self._fail(f.PROTOCOL_ERROR, "expected CONTINUATION")
            return
        if kind == f.DATA:
            self._data(flags, sid, payload)
        elif kind == f.HEADERS:
            self._headers(flags, sid, payload)
        elif kind == f.CONTINUATION:
            if self.header_block is None or sid != self.header_sid:
                self._fail(f.PROTOCOL_ERROR, "unexpected CONTINUATION")
                return
            self.header_block += payload
            if flags & f.END_HEADERS:
                block, self.header_block = bytes(self.header_block), None
                self._request(sid, block, self.header_end_stream)
        elif kind == f.WINDOW_UPDATE:
            increment = f.u32(payload) & 0x7FFFFFFF
            if sid == 0:
                self.send_window += increment
            else:
                stream = self.streams.get(sid)
                if stream is not None:
                    stream.send_window += increment
            self._wake_windows()
        elif kind == f.SETTINGS:
            if not flags & f.ACK:
                self._settings(payload)
        elif kind == f.PING:
            if not flags & f.ACK:
                self.write(f.frame(f.PING, f.ACK, 0, payload))
        elif kind == f.RST_STREAM:
            stream = self.streams.get(sid)
            if stream is not None:
                stream.cancel()
        elif kind == f.GOAWAY:
            self.going_away = True
        elif kind == f.PUSH_PROMISE:
            self._fail(f.PROTOCOL_ERROR, "a client may not push")
        # PRIORITY and unknown types are ignored, as RFC 9113 allows.

    def _settings(self, payload: bytes) -> None:
        for key, value in f.parse_settings(payload):
            if key == f.SETTINGS_INITIAL_WINDOW_SIZE:
                delta = value - self.initial_send_window
                self.initial_send_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
                self._wake_windows()
            elif key == f.SETTINGS_MAX_FRAME_SIZE:
                self.max_frame = value
        self.write(f.frame(f.SETTINGS, f.ACK, 0))

    def _headers(self, flags: int, sid: int, payload: bytes) -> None:
        if flags & f.PADDED:
            payload = payload[1 : len(payload) - payload[0]]
        if flags & f.PRIORITY_FLAG:
            payload = payload[5:]
        if flags & f.END_HEADERS:
            self._request(sid, payload, bool(flags & f.END_STREAM))
        else:
            self.header_block = bytearray(payload)
            self.header_sid = sid
            self.header_end_stream = bool(flags & f.END_STREAM)

    def _request(self, sid: int, block: bytes, end_stream: bool) -> None:
        # A client repeating a call sends the same block (every field a
        # reference into the dynamic table): what it says is taken from the
        # last time, as long as the table has not changed since.
        decoder = self.decoder
        seen = self.parsed.get(block)
        if seen is not None and seen[0] == decoder.changes:
            _, path, timeout, md = seen
        else:
            before = decoder.changes
            try:
                fields = decoder.decode(block)
            except hpack.DecodeError as e:
                self._fail(f.COMPRESSION_ERROR, f"header block does not decode: {e}")
                return
            path, timeout, md = _call_headers(fields)
            if decoder.changes == before:  # a block that adds to the table is never sent again
                if len(self.parsed) >= PARSED_BLOCKS:
                    self.parsed.clear()
                self.parsed[block] = (before, path, timeout, md)
        stream = self.streams.get(sid)
        if stream is not None:  # trailers from the client end its side
            if end_stream:
                self._remote_end(stream)
            return
        if sid % 2 == 0 or sid <= self.last_sid:
            self._fail(f.PROTOCOL_ERROR, f"stream {sid} cannot be opened")
            return
        self.last_sid = sid
        if self.server.stopping:
            self.write(f.rst_stream(sid, f.REFUSED_STREAM))
            return
        method = self.server.lookup(path, md)
        if method is None:
            out = f.RESPONSE_HEADERS + f.status_fields(
                CODE_INT[grpc.StatusCode.UNIMPLEMENTED], f"unknown method {path}"
            )
            self.write(f.headers(sid, out, True, self.max_frame))
            if not end_stream:
                self.write(f.rst_stream(sid, f.NO_ERROR))
            return
        stream = Stream(self, sid, method)
        deadline = None if timeout is None else self.loop.time() + timeout
        stream.ctx = Context(stream, md, deadline)
        self.streams[sid] = stream
        if deadline is not None:
            stream.timer = self.loop.call_at(deadline, stream.expire)
        if method.kind is STREAM_UNARY or method.kind is STREAM_STREAM:
            stream.start()
        if end_stream:
            self._remote_end(stream)

    def _remote_end(self, stream: Stream) -> None:
        if stream.remote_closed:
            return
        stream.remote_closed = True
        if stream.task is None:
            if stream.body:
                stream.finish(grpc.StatusCode.INTERNAL, "request ends inside a message")
            else:
                stream.start()
        else:
            stream.end_inbox()

    def _data(self, flags: int, sid: int, payload: bytes | memoryview) -> None:
        size = len(payload)
        self.conn_credit += size
        if flags & f.PADDED:
            payload = payload[1 : size - payload[0]]
        stream = self.streams.get(sid)
        if stream is None or stream.remote_closed:
            return  # a stream we already answered: its bytes only count for the window
        error = stream.feed(payload)
        if error is not None:
            code = (
                grpc.StatusCode.UNIMPLEMENTED
                if error.startswith("compressed")
                else grpc.StatusCode.RESOURCE_EXHAUSTED
            )
            stream.finish(code, error)  # answered first: the handler's end then says nothing
            if stream.task is not None and not stream.task.done():
                stream.task.cancel()
            return
        if stream.queued < STREAM_WINDOW:
            self.stream_credit[sid] = self.stream_credit.get(sid, 0) + size
        else:
            stream.held += size
        if flags & f.END_STREAM:
            self._remote_end(stream)

    def credit_stream(self, stream: Stream, size: int) -> None:
        if not stream.remote_closed and not stream.finished:
            self.write(f.window_update(stream.sid, size))

    def _flush_credit(self) -> None:
        if self.conn_credit >= CREDIT_BATCH:
            self.write(f.window_update(0, self.conn_credit))
            self.conn_credit = 0
        if self.stream_credit:
            for sid, size in self.stream_credit.items():
                stream = self.streams.get(sid)
                if stream is not None and not stream.remote_closed:
                    self.write(f.window_update(sid, size))
            self.stream_credit.clear()

    # ------------------------------------------------------------------ frames out

    async def send_data(
        self, stream: Stream, prefix: bytes, data: bytes | memoryview, hold: bool
    ) -> None:
        """One gRPC message (``prefix`` and ``data``) as DATA frames within the
        windows, without copying ``data``; ``hold`` leaves them for the
        stream's trailers to go in the same write."""
        if self.paused:  # the peer has not read what it has: nothing more for it yet
            await self.drain()
            if stream.was_cancelled or self.lost:
                raise StreamGone
        out: list[bytes | memoryview] = []
        if not stream.headers_sent:
            stream.headers_sent = True
            out.append(f.frame(f.HEADERS, f.END_HEADERS, stream.sid, f.RESPONSE_HEADERS))
        pending: list[bytes | memoryview] = [prefix, memoryview(data)]
        left = len(prefix) + len(data)
        while left:
            n = min(left, self.send_window, stream.send_window, self.max_frame)
            if n <= 0:
                if out:
                    self.write_parts(out)
                    out = []
                    hold = False
                await self._wait_window(stream)
                continue
            out.append(f.HEADER.pack(n << 8 | f.DATA, 0, stream.sid))
            take = n
            while take:
                piece = pending[0]
                if len(piece) <= take:
                    out.append(piece)
                    take -= len(piece)
                    pending.pop(0)
                else:
                    out.append(piece[:take])
                    pending[0] = piece[take:]
                    take = 0
            left -= n
            self.send_window -= n
            stream.send_window -= n
        if hold:
            self.held[stream.sid] = out
        else:
            self.write_parts(out)
        if self.paused:
            await self.drain()
        if stream.was_cancelled or self.lost:
            raise StreamGone

    async def _wait_window(self, stream: Stream) -> None:
        if stream.was_cancelled or stream.finished or self.lost:
            raise StreamGone
        waiter = self.loop.create_future()
        self.window_waiters.append(waiter)
        await waiter
        if stream.was_cancelled or stream.finished or self.lost:
            raise StreamGone

    def _wake_windows(self) -> None:
        waiters, self.window_waiters = self.window_waiters, []
        _wake(waiters)

    # ------------------------------------------------------------------ life

    def forget(self, stream: Stream) -> None:
        self.streams.pop(stream.sid, None)
        self.held.pop(stream.sid, None)
        if not self.streams:
            self._check_idle()

    def goaway(self) -> None:
        """Refuse new streams; the ones open run to their end."""
        self.write(f.goaway(self.last_sid, f.NO_ERROR))

    async def wait_idle(self) -> None:
        if not self.streams or self.lost:
            return
        if self.idle is None or self.idle.done():
            self.idle = self.loop.create_future()
        await asyncio.shield(self.idle)

    def _check_idle(self) -> None:
        if self.idle is not None and not self.idle.done():
            self.idle.set_result(None)

    def cancel_all(self) -> list[asyncio.Task[None]]:
        """Cancel every call still running; their tasks, to wait for."""
        tasks = []
        for stream in list(self.streams.values()):
            if stream.task is not None and not stream.task.done():
                stream.task.cancel()
                tasks.append(stream.task)
            elif stream.task is None:
                stream.finish(grpc.StatusCode.UNAVAILABLE, "server is stopping")
        return tasks

    def _fail(self, code: int, why: str) -> None:
        log.info("gRPC connection closed: %s", why)
        if self.transport is not None and not self.lost:
            self.transport.write(f.goaway(self.last_sid, code, why.encode()))
            self.transport.close()
        self.lost = True
        for stream in list(self.streams.values()):
            stream.cancel()


def _wake(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


def _call_headers(fields: list[hpack.Field]) -> tuple[str, float | None, Metadata]:
    """The path, the timeout (seconds) and the caller's metadata a request's
    header fields carry."""
    path = ""
    timeout: float | None = None
    metadata: list[tuple[str, str | bytes]] = []
    for name, value in fields:
        if name[0] == ":":
            if name == ":path":
                path = value
        elif name == "grpc-timeout":
            timeout = f.parse_timeout(value)
        elif name not in _RESERVED:
            if name.endswith("-bin"):
                metadata.append((name, base64.b64decode(value + "=" * (-len(value) % 4))))
            else:
                metadata.append((name, value))
    return path, timeout, tuple(metadata)
