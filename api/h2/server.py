"""berthd's gRPC server: HTTP/2 on asyncio, for unix sockets.

A drop-in for the part of ``grpc.aio.server`` berthd uses: generated
``add_*Servicer_to_server`` functions register through
``add_generic_rpc_handlers`` / ``add_registered_method_handlers``, handlers
receive a grpc.aio-style ``ServicerContext``, ``stop(grace)`` lets calls in
flight finish.  It exists for speed: grpc.aio hands every call from its C
core's threads to the event loop and back, which costs more than the whole
of a metadata call; here the frames are parsed and answered on the loop
itself (see ``api.h2.connection``).  Clients are unchanged (grpc-go's in
ctr and containerd, grpc-core's in Python).  No TLS: TCP and TLS stay on
grpc.aio (the peer content server).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from api.h2.connection import Connection
from api.h2.stream import (
    STREAM_STREAM,
    STREAM_UNARY,
    UNARY_STREAM,
    UNARY_UNARY,
)

DEFAULT_MAX_MESSAGE = 4 << 20


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    kind: int
    behavior: Callable[..., Any]
    # Takes bytes or a memoryview (protobuf's parsers take either).
    deserialize: Callable[[Any], Any] | None
    serialize: Callable[[Any], bytes] | None


class _Details(grpc.HandlerCallDetails):
    def __init__(self, method: str, invocation_metadata: Any) -> None:
        self.method = method
        self.invocation_metadata = invocation_metadata


def _method(name: str, handler: grpc.RpcMethodHandler[Any, Any]) -> Method:
    if handler.unary_unary is not None:
        kind, behavior = UNARY_UNARY, handler.unary_unary
    elif handler.unary_stream is not None:
        kind, behavior = UNARY_STREAM, handler.unary_stream
    elif handler.stream_unary is not None:
        kind, behavior = STREAM_UNARY, handler.stream_unary
    elif handler.stream_stream is not None:
        kind, behavior = STREAM_STREAM, handler.stream_stream
    else:
        raise ValueError(f"{name}: handler has no behaviour")
    return Method(name, kind, behavior, handler.request_deserializer, handler.response_serializer)


def _unix_path(address: str) -> str:
    if address.startswith("unix://"):
        return address[len("unix://") :]
    if address.startswith("unix:"):
        return address[len("unix:") :]
    raise ValueError(f"{address!r}: berthd's gRPC server listens on unix sockets only")


class Server:
    def __init__(
        self,
        *,
        max_receive_message_length: int = DEFAULT_MAX_MESSAGE,
        max_send_message_length: int = DEFAULT_MAX_MESSAGE,
        max_concurrent_streams: int = 1 << 20,
    ) -> None:
        self.max_receive = max_receive_message_length
        self.max_send = max_send_message_length
        self.max_concurrent_streams = max_concurrent_streams
        self.connections: set[Connection] = set()
        self.stopping = False
        self._registered: dict[str, Method] = {}
        self._generic: list[grpc.GenericRpcHandler] = []
        self._cache: dict[str, Method | None] = {}
        self._paths: list[str] = []
        self._listeners: list[asyncio.Server] = []
        self._stopped = asyncio.Event()
        self._cut = asyncio.Event()

    # ------------------------------------------------------------------ registration

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._generic.extend(handlers)
        self._cache.clear()

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        for name, handler in method_handlers.items():
            path = f"/{service_name}/{name}"
            self._registered[path] = _method(path, handler)
        self._cache.clear()

    def lookup(self, path: str, metadata: Any) -> Method | None:
        method = self._registered.get(path)
        if method is not None:
            return method
        try:
            return self._cache[path]
        except KeyError:
            pass
        found: Method | None = None
        details = _Details(path, metadata)
        for generic in self._generic:
            handler = generic.service(details)
            if handler is not None:
                found = _method(path, handler)
                break
        if len(self._cache) < 1024:
            self._cache[path] = found
        return found

    def add_insecure_port(self, address: str) -> int:
        self._paths.append(os.path.abspath(_unix_path(address)))
        return 1

    # ------------------------------------------------------------------ life

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for path in self._paths:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)  # as grpc does: a stale socket is replaced
            listener = await loop.create_unix_server(lambda: Connection(self), path=path)
            self._listeners.append(listener)

    async def stop(self, grace: float | None) -> None:
        """Refuse new calls at once; calls in flight get ``grace`` seconds
        (None or 0: cancelled now); then every connection is closed.  A
        second call with a shorter grace (or a cancelled first one) cuts the
        wait short."""
        if not self.stopping:
            self.stopping = True
            for listener in self._listeners:
                listener.close()
            for conn in list(self.connections):
                conn.goaway()
        if grace:
            await self._drain(grace)
        self._cut.set()
        if self._stopped.is_set():
            return
        connections = list(self.connections)
        tasks = [t for conn in connections for t in conn.cancel_all()]
        if tasks:  # let cancelled handlers write their status
            await asyncio.wait(tasks, timeout=1.0)
        for conn in connections:
            conn.close()
        for listener in self._listeners:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.wait_closed(), 1.0)
        self._stopped.set()

    async def _drain(self, grace: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        cut = asyncio.ensure_future(self._cut.wait())
        try:
            while not self._cut.is_set():
                busy = [c for c in self.connections if c.streams]
                remaining = deadline - loop.time()
                if not busy or remaining <= 0:
                    return
                waits = [asyncio.ensure_future(c.wait_idle()) for c in busy]
                try:
                    await asyncio.wait(
                        [*waits, cut], timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    for w in waits:
                        w.cancel()
        finally:
            cut.cancel()

    async def wait_for_termination(self) -> None:
        await self._stopped.wait()
