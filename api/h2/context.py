"""The servicer context a handler receives from ``api.h2``.

It is grpc.aio's ``ServicerContext`` as far as berthd's servicers and the
generated stubs use it: metadata, code and details, abort, deadline, writes
and reads on streams, cancellation.  Authentication (no TLS here) answers
empty.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
from grpc.aio import AbortError

if TYPE_CHECKING:
    from api.h2.stream import Stream

Metadata = tuple[tuple[str, str | bytes], ...]


class Context(grpc.aio.ServicerContext[Any, Any]):
    __slots__ = (
        "_callbacks",
        "_code",
        "_deadline",
        "_details",
        "_metadata",
        "_stream",
        "_trailing",
    )

    def __init__(self, stream: Stream, metadata: Metadata, deadline: float | None) -> None:
        self._stream = stream
        self._metadata = metadata
        self._deadline = deadline
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self._trailing: Metadata = ()
        self._callbacks: list[Callable[[Any], None]] = []

    # metadata
    def invocation_metadata(self) -> Metadata:  # type: ignore[override]
        return self._metadata

    async def send_initial_metadata(self, initial_metadata: Any) -> None:
        self._stream.initial_metadata(tuple(initial_metadata))

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        self._trailing = tuple(trailing_metadata)

    def trailing_metadata(self) -> Metadata:  # type: ignore[override]
        return self._trailing

    # status
    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode | None:  # type: ignore[override]
        return self._code

    def details(self) -> str:
        return self._details

    async def abort(
        self,
        code: grpc.StatusCode,
        details: str = "",
        trailing_metadata: Any = (),
    ) -> NoReturn:
        if code is grpc.StatusCode.OK:
            raise ValueError("abort with OK")
        self._code = code
        self._details = details
        if trailing_metadata:
            self._trailing = tuple(trailing_metadata)
        raise AbortError(details)

    async def abort_with_status(self, status: Any) -> NoReturn:
        await self.abort(status.code, status.details, status.trailing_metadata)

    # messages
    async def write(self, message: Any) -> None:
        await self._stream.send(message)

    async def read(self) -> Any:
        return await self._stream.read()

    # deadline and life
    def time_remaining(self) -> float | None:  # type: ignore[override]  # None: no deadline
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - asyncio.get_running_loop().time())

    def cancelled(self) -> bool:
        return self._stream.was_cancelled

    def done(self) -> bool:
        return self._stream.finished

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        self._callbacks.append(callback)

    def run_callbacks(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    # peer
    def peer(self) -> str:
        return self._stream.peer

    def peer_identities(self) -> Sequence[bytes] | None:
        return None

    def peer_identity_key(self) -> str | None:
        return None

    def auth_context(self) -> dict[str, Any]:
        return {}

    # compression: never used on these sockets
    def set_compression(self, compression: grpc.Compression) -> None:
        pass

    def disable_next_message_compression(self) -> None:
        pass
