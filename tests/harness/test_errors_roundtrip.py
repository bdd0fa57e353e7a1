"""Every typed error crosses a real gRPC server and comes back as itself."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from api import errdefs, errgrpc
from services.harness.server import PluginServer, ServerConfig
from tests.support import short_tmpdir

BY_NAME = {cls.__name__: cls for cls in errdefs.ALL_CLASSES}


async def _raise(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    name, _, message = request.decode().partition(":")
    if name == "ZeroDivisionError":
        raise ZeroDivisionError("secret internal detail")
    raise BY_NAME[name](message)


async def _raise_stream(
    request: bytes, context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[bytes]:
    yield b"first"
    await _raise(request, context)


def _register(server: grpc.aio.Server) -> None:
    handler = grpc.method_handlers_generic_handler(
        "berthd.test.Errors",
        {
            "Raise": grpc.unary_unary_rpc_method_handler(_raise),
            "RaiseStream": grpc.unary_stream_rpc_method_handler(_raise_stream),
        },
    )
    server.add_generic_rpc_handlers((handler,))


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    with short_tmpdir() as d:
        sock = str(d / "errors.sock")
        server = PluginServer("errors", ServerConfig(address=sock))
        server.add_service("berthd.test.Errors", _register)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"unix://{sock}") as ch:
                yield ch
        finally:
            await server.stop(0)
        assert not os.path.exists(sock)


@pytest.mark.parametrize("cls", errdefs.ALL_CLASSES, ids=lambda c: c.__name__)
async def test_error_class_round_trips(
    channel: grpc.aio.Channel, cls: type[errdefs.ErrdefsError]
) -> None:
    call = channel.unary_unary("/berthd.test.Errors/Raise")
    with pytest.raises(cls) as info, errgrpc.translate():
        await call(f"{cls.__name__}:blob sha256:abc".encode())
    assert type(info.value) is cls
    assert info.value.message == "blob sha256:abc"
    assert str(info.value) == f"blob sha256:abc: {cls.kind}"


async def test_error_after_stream_messages(channel: grpc.aio.Channel) -> None:
    call = channel.unary_stream("/berthd.test.Errors/RaiseStream")
    got = []
    with pytest.raises(errdefs.NotFound), errgrpc.translate():
        async for msg in call(b"NotFound:gone"):
            got.append(msg)
    assert got == [b"first"]


async def test_unknown_exception_is_internal_without_details(channel: grpc.aio.Channel) -> None:
    call = channel.unary_unary("/berthd.test.Errors/Raise")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(b"ZeroDivisionError:")
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details() == "internal error"
    assert "secret" not in (info.value.debug_error_string() or "")


def test_conflict_and_not_modified_recovered_from_failed_precondition() -> None:
    code = grpc.StatusCode.FAILED_PRECONDITION
    assert type(errgrpc.from_status(code, "update x: conflict")) is errdefs.Conflict
    assert type(errgrpc.from_status(code, "not modified")) is errdefs.NotModified
    plain = errgrpc.from_status(code, "snapshot busy: failed precondition")
    assert type(plain) is errdefs.FailedPrecondition
    assert plain.message == "snapshot busy"
    # A foreign message without containerd's suffix keeps its full text.
    assert (
        errgrpc.from_status(grpc.StatusCode.NOT_FOUND, "no such thing").message == "no such thing"
    )
    assert type(errgrpc.from_status(grpc.StatusCode.UNKNOWN, "x")) is errdefs.Unknown


def test_cancellation_and_deadline_map_like_containerd() -> None:
    import asyncio

    assert errgrpc.to_status(asyncio.CancelledError())[0] == grpc.StatusCode.CANCELLED
    assert errgrpc.to_status(TimeoutError())[0] == grpc.StatusCode.DEADLINE_EXCEEDED
    assert (
        type(errgrpc.from_status(grpc.StatusCode.CANCELLED, "context canceled")) is errdefs.Canceled
    )
    assert (
        type(errgrpc.from_status(grpc.StatusCode.DEADLINE_EXCEEDED, "context deadline exceeded"))
        is errdefs.DeadlineExceeded
    )


async def test_unavailable_names_the_peer() -> None:
    with short_tmpdir() as d:
        dead = f"{d}/nobody.sock"
        async with grpc.aio.insecure_channel(f"unix://{dead}") as ch:
            call = ch.unary_unary("/berthd.test.Errors/Raise")
            with (
                pytest.raises(errdefs.Unavailable, match=f"proxy berth at {dead}"),
                errgrpc.translate(f"proxy berth at {dead}"),
            ):
                await call(b"x", timeout=5)
