"""What a ttrpc service implementation sees: method descriptions, the call context, streams.

A service is registered as a mapping of method name to ``Method`` (unary:
``async handler(request, ctx) -> response``) or ``StreamMethod`` (``async
handler(stream, ctx) -> response or None``).  Handlers raise typed errors
(``api.errdefs``); the server turns them into the response status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from google.protobuf.message import DecodeError, Message

from api import errdefs, namespaces
from api.ttrpc.connection import Inbox
from api.ttrpc.framing import DATA

if TYPE_CHECKING:
    from api.ttrpc.connection import FrameProtocol

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)


def decode(request_type: type[Req], data: bytes, what: str) -> Req:
    try:
        return request_type.FromString(data)
    except DecodeError as e:
        raise errdefs.InvalidArgument(
            f"ttrpc {what}: cannot decode {request_type.DESCRIPTOR.full_name}: {e}"
        ) from None


class Context:
    """One call's metadata and deadline (loop time, None when the client set none)."""

    __slots__ = ("deadline", "metadata", "method", "service")

    def __init__(
        self,
        service: str,
        method: str,
        metadata: dict[str, list[str]],
        deadline: float | None,
    ) -> None:
        self.service = service
        self.method = method
        self.metadata = metadata  # keys as the client sent them (ttrpc clients lower-case them)
        self.deadline = deadline

    def get(self, key: str) -> str | None:
        """The first value under ``key`` (looked up lower-cased, as ttrpc's MD.Get)."""
        values = self.metadata.get(key.lower())
        return values[0] if values else None

    def time_remaining(self) -> float | None:
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - asyncio.get_running_loop().time())

    def namespace(self) -> str | None:
        """The containerd namespace the caller sent (``containerd-namespace-ttrpc``), validated."""
        return namespaces.from_metadata(
            (key, value) for key, values in self.metadata.items() for value in values
        )

    def namespace_required(self) -> str:
        """As ``namespace``; FailedPrecondition when the caller sent none."""
        ns = self.namespace()
        if ns is None:
            raise errdefs.FailedPrecondition("namespace is required")
        return ns


@dataclass(frozen=True, slots=True)
class Method(Generic[Req, Resp]):
    """A unary method: decode ``request_type``, await ``handler``, answer its result."""

    request_type: type[Req]
    handler: Callable[[Req, Context], Awaitable[Resp]]


@dataclass(frozen=True, slots=True)
class StreamMethod(Generic[Req, Resp]):
    """A streaming method (ttrpc 1.2).

    The handler reads the client's messages with ``stream.recv()`` (for a
    server-streaming-only method the one request), sends with
    ``stream.send()`` when ``server_streaming``, and returns the final message
    or None: the response payload when only the client streams, else an
    optional last data message.
    """

    request_type: type[Req]
    handler: Callable[[ServerStream[Req, Resp], Context], Awaitable[Resp | None]]
    client_streaming: bool
    server_streaming: bool


AnyMethod = Method[Any, Any] | StreamMethod[Any, Any]


class ServerStream(Generic[Req, Resp]):
    """The handler's end of a streaming call."""

    def __init__(
        self,
        conn: FrameProtocol,
        stream_id: int,
        method: StreamMethod[Req, Resp],
        what: str,
    ) -> None:
        self._conn = conn
        self._id = stream_id
        self._method = method
        self._what = what
        self.inbox: Inbox[bytes] = Inbox(conn)

    async def recv(self) -> Req | None:
        """The client's next message; None when it has finished sending."""
        data = await self.inbox.get()
        if data is None:
            return None
        return decode(self._method.request_type, data, self._what)

    async def send(self, message: Resp) -> None:
        """One data message to the client; waits while the client is not reading."""
        if not self._method.server_streaming:
            raise errdefs.FailedPrecondition(f"ttrpc {self._what}: the server does not stream")
        self._conn.send(self._id, DATA, 0, message.SerializeToString())
        await self._conn.drain()

    def __aiter__(self) -> ServerStream[Req, Resp]:
        return self

    async def __anext__(self) -> Req:
        message = await self.recv()
        if message is None:
            raise StopAsyncIteration
        return message
