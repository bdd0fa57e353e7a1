"""A ttrpc server on unix sockets.

Behaviour follows github.com/containerd/ttrpc's server (server.go,
services.go): stream ids must be odd and increasing; an unknown service or
method is answered Unimplemented "service X" / "method X"; a request's
``timeout_nano`` becomes the handler's deadline (the handler is cancelled
then and DeadlineExceeded answered); when the client goes away its handlers
are cancelled.  One deliberate difference: a response over the size limit is
answered with ResourceExhausted on its stream where ttrpc drops the whole
connection.

Each request runs its handler in a task; everything else (routing, decoding
the envelope, writing the answer) happens in the connection's read callback
or in that task, with no queue in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from collections.abc import Mapping

from google.protobuf.message import DecodeError, Message

from api import errcodes, errdefs
from api.google.rpc.status_pb2 import Status
from api.sockets import prepare_socket
from api.ttrpc.address import address_to_path, is_abstract
from api.ttrpc.connection import FrameProtocol, Inbox
from api.ttrpc.framing import (
    DATA,
    DEFAULT_MAX,
    FLAG_NO_DATA,
    FLAG_REMOTE_CLOSED,
    REQUEST,
    RESPONSE,
    oversize_error,
)
from api.ttrpc.request_pb2 import Request, Response
from api.ttrpc.service import AnyMethod, Context, Method, ServerStream, StreamMethod, decode
from api.ttrpc.status import ConnectionClosed, to_status

log = logging.getLogger(__name__)

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class _Call:
    __slots__ = ("expired", "stream", "task", "timer")

    def __init__(self, task: asyncio.Task[None], stream: ServerStream[Message, Message] | None):
        self.task = task
        self.stream = stream
        self.expired = False
        self.timer: asyncio.TimerHandle | None = None


class _Connection(FrameProtocol):
    """The server side of one accepted connection."""

    def __init__(self, server: Server) -> None:
        super().__init__(server.max_message_size, "client")
        self.server = server
        self.calls: dict[int, _Call] = {}
        self.last_id = 0
        self.draining = False
        self.finished: asyncio.Future[None] = self.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        creds = None
        if sock is not None and sock.family == socket.AF_UNIX:
            with contextlib.suppress(OSError):
                creds = _UCRED.unpack(
                    sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
                )
        if creds is not None:
            self.name = f"client pid {creds[0]}"
        if self.server.require_same_user and (
            creds is None or (creds[1], creds[2]) != (os.geteuid(), os.getegid())
        ):
            # containerd's ttrpc socket (UnixSocketRequireSameUser) refuses other users.
            log.warning("ttrpc: refusing %s: credentials %s differ from ours", self.name, creds)
            assert self.transport is not None
            self.transport.abort()
            return
        self.server._connections.add(self)

    # -- frames from the client -----------------------------------------------

    def frame_received(self, stream_id: int, mtype: int, flags: int, data: bytes) -> None:
        if not stream_id & 1:
            self._status(
                stream_id,
                errcodes.INVALID_ARGUMENT,
                "StreamID must be odd for client initiated streams",
            )
        elif mtype == REQUEST:
            self._request(stream_id, flags, data)
        elif mtype == DATA:
            self._data(stream_id, flags, data)
        else:
            log.debug("ttrpc %s: ignoring message type %d", self.name, mtype)

    def oversize_received(self, stream_id: int, mtype: int, flags: int, length: int) -> None:
        error = oversize_error(length, self.max_message_size)
        log.warning("ttrpc %s: stream %d: %s", self.name, stream_id, error)
        self._status(stream_id, errcodes.RESOURCE_EXHAUSTED, error.message)

    def _request(self, stream_id: int, flags: int, data: bytes) -> None:
        if stream_id <= self.last_id:
            self._status(
                stream_id,
                errcodes.INVALID_ARGUMENT,
                "StreamID cannot be re-used and must increment",
            )
            return
        self.last_id = stream_id
        try:
            req = Request.FromString(data)
        except DecodeError as e:
            self._status(stream_id, errcodes.INVALID_ARGUMENT, f"unmarshal request error: {e}")
            return
        service = self.server._services.get(req.service)
        if service is None:
            self._status(stream_id, errcodes.UNIMPLEMENTED, f"service {req.service}")
            return
        method = service.get(req.method)
        if method is None:
            self._status(stream_id, errcodes.UNIMPLEMENTED, f"method {req.method}")
            return
        metadata: dict[str, list[str]] = {}
        for kv in req.metadata:
            metadata.setdefault(kv.key, []).append(kv.value)
        deadline = None
        if req.timeout_nano > 0:
            deadline = self.loop.time() + req.timeout_nano / 1e9
        ctx = Context(req.service, req.method, metadata, deadline)
        if isinstance(method, Method):
            task = self.loop.create_task(self._unary(stream_id, method, req.payload, ctx))
            call = _Call(task, None)
        else:
            stream: ServerStream[Message, Message] = ServerStream(
                self, stream_id, method, f"{req.service}/{req.method}"
            )
            # ttrpc hands the request's payload to the handler as the first
            # message, except an empty one that opens a client stream.
            if req.payload or not method.client_streaming:
                stream.inbox.put(req.payload)
            if not method.client_streaming or flags & FLAG_REMOTE_CLOSED:
                stream.inbox.finish()
            task = self.loop.create_task(self._streaming(stream_id, method, stream, ctx))
            call = _Call(task, stream)
        self.calls[stream_id] = call
        if deadline is not None:
            call.timer = self.loop.call_at(deadline, self._expire, call)

    def _data(self, stream_id: int, flags: int, data: bytes) -> None:
        call = self.calls.get(stream_id)
        if call is None or call.stream is None:
            self._status(stream_id, errcodes.INVALID_ARGUMENT, "StreamID is no longer active")
            return
        inbox = call.stream.inbox
        if inbox.done:
            self._status(
                stream_id, errcodes.INVALID_ARGUMENT, "data handling error: ttrpc: stream closed"
            )
            return
        if not flags & FLAG_NO_DATA:
            inbox.put(data)
        if flags & FLAG_REMOTE_CLOSED:
            inbox.finish()

    def stream_full(self, inbox: Inbox[object]) -> None:
        for stream_id, call in self.calls.items():
            if call.stream is not None and call.stream.inbox is inbox:
                error = errdefs.ResourceExhausted("ttrpc: stream buffer full")
                inbox.finish(error)
                self._status(
                    stream_id, errcodes.INVALID_ARGUMENT, f"data handling error: {error.message}"
                )
                return

    # -- running handlers -----------------------------------------------------

    @staticmethod
    def _expire(call: _Call) -> None:
        call.expired = True
        call.timer = None
        call.task.cancel()

    async def _unary(
        self, stream_id: int, method: Method[Message, Message], payload: bytes, ctx: Context
    ) -> None:
        what = f"{ctx.service}/{ctx.method}"
        try:
            response = await method.handler(decode(method.request_type, payload, what), ctx)
            self._respond(stream_id, Status(), response.SerializeToString())
        except asyncio.CancelledError:
            self._cancelled(stream_id, what)
        except Exception as e:
            self._respond(stream_id, to_status(e, what), b"")
        finally:
            self._done(stream_id)

    async def _streaming(
        self,
        stream_id: int,
        method: StreamMethod[Message, Message],
        stream: ServerStream[Message, Message],
        ctx: Context,
    ) -> None:
        what = f"{ctx.service}/{ctx.method}"
        try:
            result = await method.handler(stream, ctx)
            data = result.SerializeToString() if result is not None else None
            if method.server_streaming:
                flags = FLAG_REMOTE_CLOSED | (FLAG_NO_DATA if data is None else 0)
                self._send(stream_id, DATA, flags, data or b"")
            else:
                self._respond(stream_id, Status(), data or b"")
        except asyncio.CancelledError:
            self._cancelled(stream_id, what)
        except Exception as e:
            self._respond(stream_id, to_status(e, what), b"")
        finally:
            stream.inbox.finish(errdefs.Canceled(f"ttrpc {what}: call finished"), drop=True)
            self._done(stream_id)

    def _cancelled(self, stream_id: int, what: str) -> None:
        call = self.calls.get(stream_id)
        if call is not None and call.expired:
            self._respond(stream_id, to_status(errdefs.DeadlineExceeded(), what), b"")
        # Otherwise the client or the server went away: nobody to answer.

    def _done(self, stream_id: int) -> None:
        call = self.calls.pop(stream_id, None)
        if call is not None and call.timer is not None:
            call.timer.cancel()
        if self.draining and not self.calls and self.transport is not None:
            self.transport.close()

    # -- answers --------------------------------------------------------------

    def _status(self, stream_id: int, code: int, message: str) -> None:
        self._respond(stream_id, Status(code=code, message=message), b"")

    def _respond(self, stream_id: int, status: Status, payload: bytes) -> None:
        data = Response(status=status, payload=payload).SerializeToString()
        if len(data) > self.max_message_size:
            # ttrpc would drop the connection here; one failed call is enough.
            error = oversize_error(len(data), self.max_message_size)
            log.warning("ttrpc %s: stream %d: response refused: %s", self.name, stream_id, error)
            data = Response(
                status=Status(code=errcodes.RESOURCE_EXHAUSTED, message=error.message)
            ).SerializeToString()
        self._send(stream_id, RESPONSE, 0, data)

    def _send(self, stream_id: int, mtype: int, flags: int, data: bytes) -> None:
        if self.closed is None:
            try:
                self.send(stream_id, mtype, flags, data)
            except errdefs.ResourceExhausted as e:  # a final data frame over the limit
                self._status(stream_id, errcodes.RESOURCE_EXHAUSTED, e.message)

    # -- lifecycle ------------------------------------------------------------

    def start_draining(self) -> None:
        """Finish the calls in flight, then close (immediately when idle)."""
        self.draining = True
        if not self.calls and self.transport is not None:
            self.transport.close()

    def lost(self, error: ConnectionClosed) -> None:
        self.server._connections.discard(self)
        for call in self.calls.values():
            if call.stream is not None:
                call.stream.inbox.finish(self.closed_error(), drop=True)
            call.task.cancel()
        if not self.finished.done():
            self.finished.set_result(None)


class Server:
    """Serves registered ttrpc services on one or more unix sockets."""

    def __init__(self, *, max_message_size: int = DEFAULT_MAX, require_same_user: bool = False):
        if max_message_size <= 0:
            raise errdefs.InvalidArgument(f"max_message_size must be positive: {max_message_size}")
        self.max_message_size = max_message_size
        self.require_same_user = require_same_user
        self._services: dict[str, dict[str, AnyMethod]] = {}
        self._listeners: list[tuple[asyncio.Server, str, int | None]] = []
        self._connections: set[_Connection] = set()
        self._closing = False

    def register(self, service: str, methods: Mapping[str, AnyMethod]) -> None:
        """Serve ``service`` (e.g. "containerd.services.events.ttrpc.v1.Events")."""
        if service in self._services:
            raise errdefs.AlreadyExists(f"ttrpc service {service} is already registered")
        for name, method in methods.items():
            if not isinstance(method, Method | StreamMethod):
                raise errdefs.InvalidArgument(
                    f"ttrpc service {service}: method {name} is a {type(method).__name__}, "
                    "not a Method or StreamMethod"
                )
        self._services[service] = dict(methods)

    async def serve_unix(
        self, path: str, *, mode: int = 0o660, uid: int = -1, gid: int = -1, dir_mode: int = 0o711
    ) -> None:
        """Listen on ``path`` and return once accepting.

        A stale socket there is replaced, a live one refused (AddressInUse);
        the directory is created with ``dir_mode``; the socket gets ``mode``
        and, when not -1, ``uid``/``gid``.  Abstract addresses (``@name``)
        have no file and skip all of that.
        """
        if self._closing:
            raise errdefs.FailedPrecondition("ttrpc server is closed")
        sock_path = address_to_path(path)
        abstract = is_abstract(sock_path)
        if not abstract:
            prepare_socket(sock_path, dir_mode)
        loop = asyncio.get_running_loop()
        listener = await loop.create_unix_server(lambda: _Connection(self), sock_path)
        inode = None
        if not abstract:
            os.chmod(sock_path, mode)
            if uid >= 0 or gid >= 0:
                os.chown(sock_path, uid, gid)
            inode = os.stat(sock_path).st_ino
        self._listeners.append((listener, sock_path, inode))
        log.info("ttrpc serving on %s", path)

    async def close(self, grace: float = 0.0) -> None:
        """Stop accepting, let calls in flight finish for ``grace`` seconds, then cancel them.

        Idle connections close at once, busy ones when their last call ends.
        The socket files this server created are removed.
        """
        self._closing = True
        listeners, self._listeners = self._listeners, []
        for listener, sock_path, inode in listeners:
            listener.close()
            if inode is not None:
                with contextlib.suppress(FileNotFoundError):
                    if os.stat(sock_path).st_ino == inode:
                        os.unlink(sock_path)
        conns = list(self._connections)
        for conn in conns:
            conn.start_draining()
        pending = [conn.finished for conn in conns]
        if pending and grace > 0:
            await asyncio.wait(pending, timeout=grace)
        tasks = [call.task for conn in conns for call in conn.calls.values()]
        for conn in conns:
            if conn.transport is not None:
                conn.transport.abort()
        for task in tasks:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        if tasks:
            await asyncio.wait(tasks)
        for listener, _, _ in listeners:
            await listener.wait_closed()
