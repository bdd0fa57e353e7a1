"""A real ttrpc server on a temp unix socket, a client for it, and a raw frame peer."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import empty_pb2, wrappers_pb2

from api import errdefs
from api.ttrpc import Client, Context, Method, Server, ServerStream, StreamMethod
from api.ttrpc.framing import HEADER, HEADER_SIZE
from tests.support import short_tmpdir

SERVICE = "berthd.test.Echo"
BY_NAME = {cls.__name__: cls for cls in errdefs.ALL_CLASSES}

StringValue = wrappers_pb2.StringValue
Int64Value = wrappers_pb2.Int64Value
BytesValue = wrappers_pb2.BytesValue
Empty = empty_pb2.Empty


class EchoService:
    """Handlers whose behaviour the request chooses; they record what they saw."""

    def __init__(self) -> None:
        self.contexts: list[Context] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.started: dict[str, asyncio.Event] = {}
        self.cancelled: dict[str, asyncio.Event] = {}

    def _event(self, table: dict[str, asyncio.Event], key: str) -> asyncio.Event:
        return table.setdefault(key, asyncio.Event())

    def gate(self, key: str) -> asyncio.Event:
        return self._event(self.gates, key)

    def started_event(self, key: str) -> asyncio.Event:
        return self._event(self.started, key)

    def cancelled_event(self, key: str) -> asyncio.Event:
        return self._event(self.cancelled, key)

    async def echo(self, req: wrappers_pb2.StringValue, ctx: Context) -> wrappers_pb2.StringValue:
        self.contexts.append(ctx)
        return StringValue(value=req.value)

    async def wait(self, req: wrappers_pb2.StringValue, ctx: Context) -> wrappers_pb2.StringValue:
        """Answer ``req.value`` once the test opens the gate of that name."""
        self.started_event(req.value).set()
        try:
            await self.gate(req.value).wait()
        except asyncio.CancelledError:
            self.cancelled_event(req.value).set()
            raise
        return StringValue(value=req.value)

    async def raise_(self, req: wrappers_pb2.StringValue, ctx: Context) -> Empty:
        name, _, message = req.value.partition(":")
        if name == "ZeroDivisionError":
            raise ZeroDivisionError("secret internal detail")
        raise BY_NAME[name](message)

    async def big(self, req: wrappers_pb2.Int64Value, ctx: Context) -> wrappers_pb2.BytesValue:
        return BytesValue(value=b"x" * req.value)

    async def meta(self, req: Empty, ctx: Context) -> wrappers_pb2.StringValue:
        return StringValue(
            value=json.dumps(
                {
                    "metadata": ctx.metadata,
                    "namespace": ctx.namespace(),
                    "has_deadline": bool(ctx.deadline),
                }
            )
        )

    # -- streaming --------------------------------------------------------------

    async def count(
        self, stream: ServerStream[wrappers_pb2.Int64Value, wrappers_pb2.StringValue], ctx: Context
    ) -> wrappers_pb2.StringValue | None:
        """Server streaming: n messages "0".."n-1"; a negative n fails after |n| messages."""
        req = await stream.recv()
        assert req is not None
        n = req.value
        for i in range(abs(n)):
            await stream.send(StringValue(value=str(i)))
        if n < 0:
            raise errdefs.NotFound(f"after {-n}")
        return None

    async def sum(
        self, stream: ServerStream[wrappers_pb2.Int64Value, wrappers_pb2.Int64Value], ctx: Context
    ) -> wrappers_pb2.Int64Value:
        """Client streaming: the sum of the values sent."""
        total = 0
        async for msg in stream:
            total += msg.value
        return Int64Value(value=total)

    async def chat(
        self, stream: ServerStream[wrappers_pb2.StringValue, wrappers_pb2.StringValue], ctx: Context
    ) -> wrappers_pb2.StringValue:
        """Bidi: each message echoed upper-cased; a last message "done" after the client ends."""
        async for msg in stream:
            await stream.send(StringValue(value=msg.value.upper()))
        return StringValue(value="done")

    async def nothing(
        self, stream: ServerStream[Empty, wrappers_pb2.StringValue], ctx: Context
    ) -> None:
        """Server streaming from an Empty request (empty payload, ttrpc issue #126)."""
        req = await stream.recv()
        assert req is not None
        await stream.send(StringValue(value="got empty"))

    def methods(self) -> dict[str, Method[Any, Any] | StreamMethod[Any, Any]]:
        return {
            "Echo": Method(StringValue, self.echo),
            "Wait": Method(StringValue, self.wait),
            "Raise": Method(StringValue, self.raise_),
            "Big": Method(Int64Value, self.big),
            "Meta": Method(Empty, self.meta),
            "Count": StreamMethod(Int64Value, self.count, False, True),
            "Sum": StreamMethod(Int64Value, self.sum, True, False),
            "Chat": StreamMethod(StringValue, self.chat, True, True),
            "Nothing": StreamMethod(Empty, self.nothing, False, True),
        }


@pytest.fixture
def tmp() -> Iterator[Path]:
    with short_tmpdir("tt") as d:
        yield d


@pytest.fixture
def service() -> EchoService:
    return EchoService()


@pytest.fixture
async def server_path(tmp: Path, service: EchoService) -> AsyncIterator[str]:
    server = Server()
    server.register(SERVICE, service.methods())
    path = str(tmp / "echo.sock")
    await server.serve_unix(path)
    try:
        yield path
    finally:
        await server.close(0)


@pytest.fixture
async def client(server_path: str) -> AsyncIterator[Client]:
    c = await Client.connect(server_path)
    try:
        yield c
    finally:
        await c.close()


class RawPeer:
    """One end of a ttrpc connection spoken frame by frame."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, path: str) -> RawPeer:
        reader, writer = await asyncio.open_unix_connection(path)
        return cls(reader, writer)

    def frame(self, stream_id: int, mtype: int, flags: int, data: bytes) -> bytes:
        return HEADER.pack(len(data), stream_id, mtype, flags) + data

    async def send(self, stream_id: int, mtype: int, flags: int, data: bytes) -> None:
        self.writer.write(self.frame(stream_id, mtype, flags, data))
        await self.writer.drain()

    async def write(self, raw: bytes) -> None:
        self.writer.write(raw)
        await self.writer.drain()

    async def recv(self) -> tuple[int, int, int, bytes]:
        """(stream id, type, flags, data) of the next frame; bounded so a bug cannot hang."""
        async with asyncio.timeout(30):
            header = await self.reader.readexactly(HEADER_SIZE)
            length, stream_id, mtype, flags = HEADER.unpack(header)
            data = await self.reader.readexactly(length)
        return stream_id, mtype, flags, data

    async def at_eof(self) -> bool:
        async with asyncio.timeout(30):
            return await self.reader.read(1) == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, BrokenPipeError):
            await self.writer.wait_closed()
