"""A ttrpc client: many concurrent calls over one unix socket connection.

Each call is a stream with its own odd id (1, 3, 5, ... in the order the
requests are written, which ttrpc 1.2 servers require).  A unary call costs
one future: the response frame resolves it straight from the connection's
read callback, no task per call.  ``timeout`` travels as the request's
``timeout_nano`` and is also enforced here; a call that times out or is
cancelled is forgotten locally (ttrpc has no reset frame) and a late answer is
dropped.  When the connection goes, every pending call fails with
``ConnectionClosed`` (an Unavailable).

Streaming calls follow ttrpc 1.2 (containerd 1.7+): a request flagged
remote-open is followed by data frames the client ends with a remote-closed,
no-data frame; a server-streaming reply is data frames, the last flagged
remote-closed, or a response frame carrying an error.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Generic, TypeVar

from google.protobuf.message import DecodeError, Message

from api import errdefs
from api.ttrpc.address import address_to_path, is_abstract
from api.ttrpc.connection import FrameProtocol, Inbox
from api.ttrpc.framing import (
    DATA,
    DEFAULT_MAX,
    FLAG_NO_DATA,
    FLAG_REMOTE_CLOSED,
    FLAG_REMOTE_OPEN,
    MAX_STREAM_ID,
    REQUEST,
    RESPONSE,
    oversize_error,
)
from api.ttrpc.request_pb2 import KeyValue, Request, Response
from api.ttrpc.status import ConnectionClosed, from_status

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

Metadata = Mapping[str, str | Sequence[str]]
Frame = tuple[int, int, bytes]  # message type, flags, data

__all__ = ["DEFAULT_MAX", "Client", "ClientStream", "ConnectionClosed", "Metadata"]


def metadata_entries(metadata: Metadata) -> list[KeyValue]:
    """ttrpc's wire form: one KeyValue per value, keys lower-cased as ttrpc's MD.Set does."""
    out: list[KeyValue] = []
    for key, values in metadata.items():
        key = key.lower()
        if isinstance(values, str):
            out.append(KeyValue(key=key, value=values))
        else:
            out.extend(KeyValue(key=key, value=v) for v in values)
    return out


def _request(
    service: str,
    method: str,
    payload: bytes,
    timeout: float | None,
    metadata: Metadata | None,
) -> bytes:
    req = Request(service=service, method=method, payload=payload)
    if timeout is not None:
        if timeout <= 0:
            raise errdefs.DeadlineExceeded(f"ttrpc {service}/{method}: timeout {timeout}s")
        req.timeout_nano = max(1, int(timeout * 1e9))
    if metadata:
        req.metadata.extend(metadata_entries(metadata))
    return req.SerializeToString()


def _decode(response_type: type[M], data: bytes, what: str) -> M:
    try:
        return response_type.FromString(data)
    except DecodeError as e:
        raise errdefs.Internal(
            f"ttrpc {what}: cannot decode {response_type.DESCRIPTOR.full_name}: {e}"
        ) from None


def _response(data: bytes, response_type: type[M], what: str, *, empty_is_end: bool) -> M | None:
    """The message in a response frame, or its status as a typed error."""
    try:
        resp = Response.FromString(data)
    except DecodeError as e:
        raise errdefs.Internal(f"ttrpc {what}: cannot decode the response envelope: {e}") from None
    if resp.status.code:
        raise from_status(resp.status)
    if empty_is_end and not resp.payload:
        return None
    return _decode(response_type, resp.payload, what)


def _protocol_error(what: str, detail: str) -> errdefs.Internal:
    return errdefs.Internal(f"ttrpc {what}: protocol error: {detail}")


class _Connection(FrameProtocol):
    """The client side: routes frames to the pending calls by stream id."""

    def __init__(self, max_message_size: int, name: str) -> None:
        super().__init__(max_message_size, name)
        self.unary: dict[int, asyncio.Future[Frame]] = {}
        self.streams: dict[int, ClientStream[Message]] = {}
        self.next_id = 1
        self.close_callbacks: list[Callable[[], None]] = []
        self.finished: asyncio.Future[None] = self.loop.create_future()

    def open(self, flags: int, request: bytes) -> int:
        """Write a request frame on a new stream id; returns the id."""
        if self.closed is not None:
            raise self.closed_error()
        if len(request) > self.max_message_size:
            raise oversize_error(len(request), self.max_message_size)
        stream_id = self.next_id
        if stream_id > MAX_STREAM_ID:
            raise errdefs.Unavailable(f"ttrpc: {self.name}: stream ids exhausted, reconnect")
        self.next_id = stream_id + 2
        self.send(stream_id, REQUEST, flags, request)
        return stream_id

    def frame_received(self, stream_id: int, mtype: int, flags: int, data: bytes) -> None:
        fut = self.unary.pop(stream_id, None)
        if fut is not None:
            if not fut.done():
                fut.set_result((mtype, flags, data))
            return
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream._frame(mtype, flags, data)
        else:
            log.debug("ttrpc %s: message for inactive stream %d dropped", self.name, stream_id)

    def oversize_received(self, stream_id: int, mtype: int, flags: int, length: int) -> None:
        error = oversize_error(length, self.max_message_size)
        log.warning("ttrpc %s: stream %d: %s", self.name, stream_id, error)
        fut = self.unary.pop(stream_id, None)
        if fut is not None:
            if not fut.done():
                fut.set_exception(error)
            return
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream._fail(error)

    def stream_full(self, inbox: Inbox[object]) -> None:
        for stream in list(self.streams.values()):
            if stream._inbox is inbox:
                stream._fail(errdefs.ResourceExhausted("ttrpc: stream buffer full"))

    def lost(self, error: ConnectionClosed) -> None:
        unary, self.unary = self.unary, {}
        for fut in unary.values():
            if not fut.done():
                fut.set_exception(self.closed_error())
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            stream._fail(self.closed_error())
        callbacks, self.close_callbacks = self.close_callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("ttrpc %s: on_close callback failed", self.name)
        if not self.finished.done():
            self.finished.set_result(None)


def _expire(fut: asyncio.Future[Frame], what: str, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(errdefs.DeadlineExceeded(f"ttrpc {what}: no answer within {timeout}s"))


async def _open(loop: asyncio.AbstractEventLoop, path: str, conn: _Connection) -> None:
    """Connect ``conn`` to the socket at ``path``.

    The socket is connected here, not by ``create_unix_connection(path)``:
    uvloop hands that path to libuv as a C string, so an abstract name (a
    leading NUL) reaches the kernel empty (EINVAL).  Python's socket module
    takes the name whole, on either loop.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, path)
        except ConnectionRefusedError:
            if not is_abstract(path) or path.endswith("\x00"):
                raise
            # Go before 1.20 binds a NUL-prefixed abstract name with a
            # trailing NUL (syscall.SockaddrUnix); old shims listen there.
            sock.close()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            sock.setblocking(False)
            await loop.sock_connect(sock, path + "\x00")
        await loop.create_unix_connection(lambda: conn, sock=sock)
    except BaseException:
        sock.close()
        raise


class Client:
    """One ttrpc connection; create with ``await Client.connect(path)``."""

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn

    @classmethod
    async def connect(
        cls,
        path: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - part of the connect contract
        max_message_size: int = DEFAULT_MAX,
    ) -> Client:
        """Connect to the socket at ``path`` (a path or address, see ``address_to_path``).

        Raises Unavailable when nothing accepts there (within ``timeout``).
        """
        sock = address_to_path(path)
        name = "@" + sock[1:] if is_abstract(sock) else sock
        loop = asyncio.get_running_loop()
        conn = _Connection(max_message_size, name)
        try:
            async with asyncio.timeout(timeout):
                await _open(loop, sock, conn)
        except TimeoutError:
            raise errdefs.Unavailable(
                f"ttrpc: connect {name}: timed out after {timeout}s"
            ) from None
        except OSError as e:
            raise errdefs.Unavailable(f"ttrpc: connect {name}: {e.strerror or e}") from None
        return cls(conn)

    @property
    def closed(self) -> bool:
        conn = self._conn
        return conn.closed is not None or conn.transport is None or conn.transport.is_closing()

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once when the connection is lost or closed (soon, if it already is)."""
        if self._conn.finished.done():
            self._conn.loop.call_soon(callback)
        else:
            self._conn.close_callbacks.append(callback)

    async def close(self) -> None:
        """Close the connection; pending calls fail with ConnectionClosed."""
        conn = self._conn
        if conn.transport is not None and not conn.transport.is_closing():
            conn.transport.close()
        await asyncio.shield(conn.finished)

    async def call(
        self,
        service: str,
        method: str,
        request: Message,
        response_type: type[M],
        *,
        # Not replaceable by asyncio.timeout: it travels to the server as timeout_nano.
        timeout: float | None = None,  # noqa: ASYNC109
        metadata: Metadata | None = None,
    ) -> M:
        """One unary call.  Raises the typed error of the answer's status, DeadlineExceeded
        after ``timeout`` seconds, ResourceExhausted for a message over the size limit
        (either way), ConnectionClosed when the connection goes."""
        conn = self._conn
        data = _request(service, method, request.SerializeToString(), timeout, metadata)
        fut: asyncio.Future[Frame] = conn.loop.create_future()
        stream_id = conn.open(0, data)
        conn.unary[stream_id] = fut
        timer = None
        if timeout is not None:
            timer = conn.loop.call_later(timeout, _expire, fut, f"{service}/{method}", timeout)
        try:
            mtype, _flags, payload = await fut
        finally:
            if timer is not None:
                timer.cancel()
            conn.unary.pop(stream_id, None)
        if mtype != RESPONSE:
            raise _protocol_error(f"{service}/{method}", f"message type {mtype} on a unary call")
        result = _response(payload, response_type, f"{service}/{method}", empty_is_end=False)
        assert result is not None
        return result

    def stream(
        self,
        service: str,
        method: str,
        request: Message | None,
        response_type: type[M],
        *,
        client_streaming: bool,
        server_streaming: bool,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> ClientStream[M]:
        """Open a streaming call; its request frame is written before this returns.

        ``request`` is the first (for a server-streaming call, the only)
        message; None sends none.  Raises as ``call`` does for the request.
        """
        conn = self._conn
        payload = request.SerializeToString() if request is not None else b""
        data = _request(service, method, payload, timeout, metadata)
        flags = FLAG_REMOTE_OPEN if client_streaming else FLAG_REMOTE_CLOSED
        stream_id = conn.open(flags, data)
        stream = ClientStream(
            conn,
            stream_id,
            f"{service}/{method}",
            response_type,
            client_streaming,
            server_streaming,
            timeout,
        )
        conn.streams[stream_id] = stream  # type: ignore[assignment]
        return stream


class ClientStream(Generic[M]):
    """One streaming call: ``send``/``close_send`` when the client streams, ``recv`` or
    ``async for`` for the answers.  ``cancel()`` (or leaving ``async with``) forgets it."""

    def __init__(
        self,
        conn: _Connection,
        stream_id: int,
        what: str,
        response_type: type[M],
        client_streaming: bool,
        server_streaming: bool,
        timeout: float | None,
    ) -> None:
        self._conn = conn
        self._id = stream_id
        self._what = what
        self._response_type = response_type
        self._client_streaming = client_streaming
        self._server_streaming = server_streaming
        self._local_closed = not client_streaming
        self._inbox: Inbox[Frame] = Inbox(conn)
        self._error: errdefs.ErrdefsError | None = None
        self._timer: asyncio.TimerHandle | None = None
        if timeout is not None:
            self._timer = conn.loop.call_later(timeout, self._expire, timeout)

    @property
    def stream_id(self) -> int:
        return self._id

    # -- called by the connection --------------------------------------------

    def _frame(self, mtype: int, flags: int, data: bytes) -> None:
        final = mtype == RESPONSE or (mtype == DATA and flags & FLAG_REMOTE_CLOSED)
        self._inbox.put((mtype, flags, data))
        if final:
            self._forget()
            self._inbox.finish()

    def _fail(self, error: errdefs.ErrdefsError, *, drop: bool = False) -> None:
        self._forget()
        if self._error is None:
            self._error = error
        self._inbox.finish(error, drop=drop)

    def _forget(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._conn.streams.get(self._id) is self:
            del self._conn.streams[self._id]

    def _expire(self, timeout: float) -> None:
        self._timer = None
        error = errdefs.DeadlineExceeded(f"ttrpc {self._what}: not finished within {timeout}s")
        self._fail(error, drop=True)

    # -- the caller's side ----------------------------------------------------

    async def send(self, message: Message) -> None:
        """Send one message (client-streaming calls only); waits while the peer is not reading."""
        if not self._client_streaming:
            raise errdefs.FailedPrecondition(f"ttrpc {self._what}: the client does not stream")
        if self._local_closed:
            raise errdefs.FailedPrecondition(f"ttrpc {self._what}: sending already closed")
        if self._error is not None:
            raise type(self._error)(self._error.message)
        self._conn.send(self._id, DATA, 0, message.SerializeToString())
        await self._conn.drain()

    async def close_send(self) -> None:
        """Tell the server the client is done sending (idempotent)."""
        if not self._client_streaming:
            raise errdefs.FailedPrecondition(f"ttrpc {self._what}: the client does not stream")
        if self._local_closed:
            return
        self._local_closed = True
        if self._error is None:
            self._conn.send(self._id, DATA, FLAG_REMOTE_CLOSED | FLAG_NO_DATA, b"")

    async def recv(self) -> M | None:
        """The next message from the server; None once the stream has ended.

        A call whose server does not stream yields its one response, then None.
        """
        frame = await self._inbox.get()
        if frame is None:
            return None
        mtype, flags, data = frame
        if mtype == RESPONSE:
            return _response(
                data, self._response_type, self._what, empty_is_end=self._server_streaming
            )
        if mtype == DATA and self._server_streaming:
            if flags & FLAG_NO_DATA:
                return None
            return _decode(self._response_type, data, self._what)
        error = _protocol_error(self._what, f"unexpected message type {mtype}")
        self._fail(error, drop=True)
        raise error

    def cancel(self) -> None:
        """Forget the call: queued and further messages are dropped, ``recv`` raises Canceled."""
        self._fail(errdefs.Canceled(f"ttrpc {self._what}: stream cancelled"), drop=True)

    def __aiter__(self) -> ClientStream[M]:
        return self

    async def __anext__(self) -> M:
        message = await self.recv()
        if message is None:
            raise StopAsyncIteration
        return message

    async def __aenter__(self) -> ClientStream[M]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()
