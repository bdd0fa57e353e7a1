"""A request that does not decode is InvalidArgument naming the field, on every
kind of RPC, with no traceback in the log."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from api.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from services.content.local import LocalContentStore
from services.content.servicer import SERVICE_NAME, ContentServicer
from services.harness.decoding import bad_utf8_field, explain
from services.harness.server import PluginServer, ServerConfig
from tests.support import short_tmpdir

BAD = b"a\xffb\xfe"  # not UTF-8
CONTENT = "/containerd.services.content.v1.Content/"


def spoil(msg: Any, marker: str) -> bytes:
    """``msg`` on the wire with the string ``marker`` replaced by bytes that are
    not UTF-8 (of the same length, so every length prefix stays right)."""
    raw: bytes = msg.SerializeToString()
    assert len(marker) == len(BAD) and raw.count(marker.encode()) == 1
    return raw.replace(marker.encode(), BAD)


async def _count(requests: AsyncIterator[content_pb2.StatusRequest], ctx: Any) -> Any:
    n = 0
    async for _ in requests:
        n += 1
    return content_pb2.StatusResponse(status=content_pb2.Status(offset=n))


def _register_counter(server: grpc.aio.Server) -> None:
    handler = grpc.method_handlers_generic_handler(
        "berthd.test.Count",
        {
            "Count": grpc.stream_unary_rpc_method_handler(
                _count,
                request_deserializer=content_pb2.StatusRequest.FromString,
                response_serializer=content_pb2.StatusResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    with short_tmpdir() as d:
        sock = str(d / "s.sock")
        server = PluginServer("decoding", ServerConfig(address=sock))
        servicer = ContentServicer(LocalContentStore(d / "content"))
        server.add_service(
            SERVICE_NAME, lambda s: content_pb2_grpc.add_ContentServicer_to_server(servicer, s)
        )
        server.add_service("berthd.test.Count", _register_counter)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"unix://{sock}") as ch:
                yield ch
        finally:
            await server.stop(0)


def _assert_refused(e: grpc.aio.AioRpcError, field: str, message: str) -> None:
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    assert e.details() == f'invalid UTF-8 in string field "{field}" of {message}: invalid argument'


def _assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert not any(r.exc_info for r in caplog.records)


async def test_unary(channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture) -> None:
    call = channel.unary_unary(CONTENT + "Status")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(spoil(content_pb2.StatusRequest(ref="@@@@"), "@@@@"))
    _assert_refused(info.value, "ref", "containerd.services.content.v1.StatusRequest")
    # a map value inside a nested message
    req = content_pb2.UpdateRequest(info=content_pb2.Info(digest="d", labels={"k": "@@@@"}))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await channel.unary_unary(CONTENT + "Update")(spoil(req, "@@@@"))
    _assert_refused(info.value, "info.labels.value", "containerd.services.content.v1.UpdateRequest")
    _assert_no_traceback(caplog)


async def test_server_stream(channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture) -> None:
    req = content_pb2.ListContentRequest(filters=["labels.a==b", "@@@@"])
    call = channel.unary_stream(CONTENT + "List")(spoil(req, "@@@@"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call:
            pass
    _assert_refused(info.value, "filters", "containerd.services.content.v1.ListContentRequest")
    _assert_no_traceback(caplog)


async def test_bidi_stream_after_good_messages(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    call = channel.stream_stream(CONTENT + "Write")()
    good = content_pb2.WriteContentRequest(action=content_pb2.STAT, ref="decoding-test")
    await call.write(good.SerializeToString())
    first = content_pb2.WriteContentResponse.FromString(await call.read())
    assert first.action == content_pb2.STAT
    bad = content_pb2.WriteContentRequest(action=content_pb2.WRITE, data=b"x", expected="@@@@")
    await call.write(spoil(bad, "@@@@"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    _assert_refused(info.value, "expected", "containerd.services.content.v1.WriteContentRequest")
    _assert_no_traceback(caplog)


async def test_client_stream(channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture) -> None:
    call = channel.stream_unary("/berthd.test.Count/Count")()
    await call.write(content_pb2.StatusRequest(ref="fine").SerializeToString())
    await call.write(spoil(content_pb2.StatusRequest(ref="@@@@"), "@@@@"))
    await call.done_writing()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    _assert_refused(info.value, "ref", "containerd.services.content.v1.StatusRequest")
    # good requests still pass
    ok = channel.stream_unary("/berthd.test.Count/Count")()
    await ok.write(content_pb2.StatusRequest(ref="x").SerializeToString())
    await ok.done_writing()
    assert content_pb2.StatusResponse.FromString(await ok).status.offset == 1
    _assert_no_traceback(caplog)


async def test_other_decode_errors_are_invalid_argument(channel: grpc.aio.Channel) -> None:
    truncated = content_pb2.StatusRequest(ref="abcdef").SerializeToString()[:-2]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await channel.unary_unary(CONTENT + "Status")(truncated)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "does not decode as containerd.services.content.v1.StatusRequest" in (
        info.value.details() or ""
    )


def test_field_paths() -> None:
    desc = content_pb2.WriteContentRequest.DESCRIPTOR
    ok = content_pb2.WriteContentRequest(ref="r", data=b"\xff\xfe", labels={"a": "b"})
    assert bad_utf8_field(desc, ok.SerializeToString()) is None
    spoiled = spoil(content_pb2.WriteContentRequest(ref="r", labels={"@@@@": "v"}), "@@@@")
    assert bad_utf8_field(desc, spoiled) == "labels.key"
    # cut short before the bad field: nothing to name, and the error says so
    assert bad_utf8_field(desc, spoiled[:3]) is None
    assert explain(desc, spoiled[:3], ValueError("cut")).endswith(": cut")
    assert explain(None, b"", ValueError("x")) == "request does not decode: x"


def _nested(levels: int) -> bytes:
    """A google.protobuf.Struct nested ``levels`` deep (through Value.struct_value),
    whose innermost key is not UTF-8; written by hand, past protobuf's limits."""

    def ld(number: int, payload: bytes) -> bytes:
        n, size = len(payload), b""
        while True:
            size += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
            n >>= 7
            if not n:
                break
        return bytes([number << 3 | 2]) + size + payload

    struct = ld(1, ld(1, BAD))  # fields: {BAD: <no value>}
    for _ in range(levels):
        struct = ld(1, ld(1, b"k") + ld(2, ld(5, struct)))
    return struct


def test_deep_nesting_is_bounded() -> None:
    desc = struct_pb2.Struct.DESCRIPTOR
    assert bad_utf8_field(desc, _nested(3)) == "fields.value.struct_value." * 3 + "fields.key"
    assert bad_utf8_field(desc, _nested(200)) is None
