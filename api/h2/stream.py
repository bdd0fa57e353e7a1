"""One call on an ``api.h2`` connection: its messages in and out, its status.

A stream takes the request's DATA as the connection parses it (whole
messages go to the handler; a unary request waits for END_STREAM), runs the
handler in one task, and ends with the trailers carrying the status (or
trailers only, when it failed before any message).
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from grpc.aio import AbortError

from api.h2 import frames as f
from api.h2.context import Context, Metadata

if TYPE_CHECKING:
    from api.h2.connection import Connection
    from api.h2.server import Method

log = logging.getLogger(__name__)

# What we let a peer send before it waits for our WINDOW_UPDATE.
STREAM_WINDOW = 4 << 20

UNARY_UNARY, UNARY_STREAM, STREAM_UNARY, STREAM_STREAM = range(4)

_OK = grpc.StatusCode.OK
CODE_INT = {code: code.value[0] for code in grpc.StatusCode}


class StreamGone(Exception):
    """The stream ended (reset by the peer, or its connection was lost)."""


class Stream:
    __slots__ = (
        "body",
        "conn",
        "ctx",
        "deadline_hit",
        "finished",
        "headers_sent",
        "held",
        "inbox",
        "inbox_ended",
        "inbox_waiter",
        "method",
        "queued",
        "remote_closed",
        "requests",
        "send_window",
        "sid",
        "task",
        "timer",
        "was_cancelled",
    )

    def __init__(self, conn: Connection, sid: int, method: Method) -> None:
        self.conn = conn
        self.sid = sid
        self.method = method
        self.ctx: Context = None  # type: ignore[assignment]  # set right after
        self.send_window = conn.initial_send_window
        self.body = bytearray()
        self.requests: list[bytes | memoryview] = []
        self.inbox: deque[bytes | memoryview] = deque()
        self.inbox_ended = False
        self.inbox_waiter: asyncio.Future[None] | None = None
        self.queued = 0  # bytes of whole messages waiting for the handler
        self.held = 0  # received bytes not yet credited back
        self.headers_sent = False
        self.remote_closed = False
        self.finished = False
        self.was_cancelled = False
        self.deadline_hit = False
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    @property
    def peer(self) -> str:
        return self.conn.peer

    # ------------------------------------------------------------------ in

    def feed(self, data: bytes | memoryview) -> str | None:
        """Take a DATA payload; whole messages go to the handler.  Returns an
        error text when the stream must fail (too large, compressed)."""
        body = self.body
        body += data
        limit = self.conn.server.max_receive
        while len(body) >= 5:
            flag, length = f.MESSAGE_PREFIX.unpack_from(body)
            if flag:
                return "compressed messages are not supported"
            if length > limit:
                return f"Received message larger than max ({length} vs. {limit})"
            if len(body) < 5 + length:
                break
            message: bytes | memoryview
            if len(body) == 5 + length:
                # The message is all there is (frames usually end with one):
                # handed over as a view of this buffer, a new one follows.
                message = memoryview(body)[5:]
                self.body = body = bytearray()
            else:
                message = bytes(body[5 : 5 + length])
                del body[: 5 + length]
            if self.method.kind in (UNARY_UNARY, UNARY_STREAM):
                self.requests.append(message)
            else:
                self.inbox.append(message)
                self.queued += length + 5
                self._wake_inbox()
        return None

    def end_inbox(self) -> None:
        self.inbox_ended = True
        self._wake_inbox()

    def _wake_inbox(self) -> None:
        waiter = self.inbox_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self) -> Any:
        """The next request message; grpc.aio's EOF marker when none follows."""
        while not self.inbox:
            if self.inbox_ended or self.was_cancelled:
                return grpc.aio.EOF
            self.inbox_waiter = self.conn.loop.create_future()
            await self.inbox_waiter
            self.inbox_waiter = None
        message = self.inbox.popleft()
        self.queued -= len(message) + 5
        if self.held and self.queued < STREAM_WINDOW:
            self.conn.credit_stream(self, self.held)
            self.held = 0
        deserialize = self.method.deserialize
        return bytes(message) if deserialize is None else deserialize(message)

    async def _requests(self) -> AsyncIterator[Any]:
        while True:
            message = await self.read()
            if message is grpc.aio.EOF:
                return
            yield message

    # ------------------------------------------------------------------ out

    def initial_metadata(self, metadata: Metadata) -> None:
        if self.headers_sent or self.finished:
            return
        block = f.RESPONSE_HEADERS + _metadata_fields(metadata)
        self.headers_sent = True
        self.conn.write(f.headers(self.sid, block, False, self.conn.max_frame))

    async def send(self, message: Any, *, hold: bool = False) -> None:
        """Send one response message (``hold``: leave it for finish's write)."""
        if self.finished or self.was_cancelled:
            raise StreamGone
        serialize = self.method.serialize
        data = message if serialize is None else serialize(message)
        limit = self.conn.server.max_send
        if len(data) > limit:
            self.ctx.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.ctx.set_details(f"Sent message larger than max ({len(data)} vs. {limit})")
            raise AbortError("message too large")
        await self.conn.send_data(self, f.MESSAGE_PREFIX.pack(0, len(data)), data, hold)

    def finish(self, code: grpc.StatusCode, details: str, trailing: Metadata = ()) -> None:
        if self.finished:
            return
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
        conn = self.conn
        if not self.was_cancelled and not conn.lost:
            fields = f.status_fields(CODE_INT[code], details) + _metadata_fields(trailing)
            block = fields if self.headers_sent else f.RESPONSE_HEADERS + fields
            out = conn.held.pop(self.sid, [])
            out.append(f.headers(self.sid, block, True, conn.max_frame))
            if not self.remote_closed:
                out.append(f.rst_stream(self.sid, f.NO_ERROR))
            conn.write_parts(out)
        conn.forget(self)
        if self.ctx is not None:
            self.ctx.run_callbacks()

    def cancel(self) -> None:
        """The peer reset the stream or the connection went away."""
        self.was_cancelled = True
        self.end_inbox()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        elif self.task is None:
            self.finish(grpc.StatusCode.CANCELLED, "")

    def expire(self) -> None:
        self.timer = None
        self.deadline_hit = True
        if self.task is not None and not self.task.done():
            self.task.cancel()
        elif self.task is None:
            self.finish(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")

    # ------------------------------------------------------------------ the call

    def start(self) -> None:
        self.task = self.conn.loop.create_task(self._run())

    async def _run(self) -> None:
        method, ctx = self.method, self.ctx
        kind = method.kind
        try:
            if kind is UNARY_UNARY or kind is UNARY_STREAM:
                if len(self.requests) != 1:
                    self.finish(
                        grpc.StatusCode.INTERNAL,
                        f"expected one request message, got {len(self.requests)}",
                    )
                    return
                raw = self.requests.pop()
                request: Any = bytes(raw) if method.deserialize is None else method.deserialize(raw)
            else:
                request = self._requests()
            result = method.behavior(request, ctx)
            if kind is UNARY_UNARY or kind is STREAM_UNARY:
                if inspect.isawaitable(result):
                    result = await result
                if ctx._code is None or ctx._code is _OK:
                    await self.send(result, hold=True)
            elif hasattr(result, "__aiter__"):
                async for response in result:
                    await self.send(response)
            elif inspect.isawaitable(result):
                await result  # a handler writing through ctx.write
            else:
                for response in result:
                    await self.send(response)
            code, details = ctx._code or _OK, ctx._details
        except AbortError:
            code, details = ctx._code or grpc.StatusCode.UNKNOWN, ctx._details
        except (asyncio.CancelledError, StreamGone):
            if self.deadline_hit:
                code, details = grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"
            elif self.was_cancelled or self.conn.lost:
                code, details = grpc.StatusCode.CANCELLED, ""
            else:
                code, details = grpc.StatusCode.UNAVAILABLE, "server is stopping"
        except Exception as e:
            log.exception("%s: handler failed", method.name)
            code, details = grpc.StatusCode.UNKNOWN, f"Unexpected {type(e)}: {e}"
        self.finish(code, details, ctx._trailing)


def _metadata_fields(metadata: Metadata) -> bytes:
    if not metadata:
        return b""
    out = b""
    for key, value in metadata:
        if key.endswith("-bin"):
            raw = value if isinstance(value, bytes) else value.encode()
            value = base64.b64encode(raw).rstrip(b"=")
        out += f.literal(key, value)
    return out
