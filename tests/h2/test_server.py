"""berthd's gRPC server (api.h2) against grpc-core's client.

Every kind of call, statuses and their messages, metadata, deadlines,
cancellation, flow control both ways with messages larger than every
window, size limits, shutdown with and without grace, and peers that do
not speak HTTP/2.  (grpc-go's client, in ctr and containerd, drives the same
server in every test of the daemon and the plugins.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2

from api.containerd.services.version.v1 import version_pb2, version_pb2_grpc
from api.h2.server import Server
from tests.support import short_tmpdir

MiB = 1 << 20
SERVICE = "berthd.test.H2"


class Probe:
    """Handlers of the test service; they record what they saw."""

    def __init__(self) -> None:
        self.metadata: dict[str, Any] = {}
        self.remaining: float | None = None
        self.cancelled = asyncio.Event()
        self.started = asyncio.Event()
        self.finished_slow = False

    async def echo(self, request: bytes, ctx: Any) -> bytes:
        self.metadata = dict(ctx.invocation_metadata())
        self.remaining = ctx.time_remaining()
        return request

    async def fail(self, request: bytes, ctx: Any) -> bytes:
        await ctx.abort(grpc.StatusCode.NOT_FOUND, request.decode())
        raise AssertionError("abort returned")

    async def crash(self, request: bytes, ctx: Any) -> bytes:
        raise RuntimeError("boom")

    async def slow(self, request: bytes, ctx: Any) -> bytes:
        self.started.set()
        try:
            await asyncio.sleep(float(request.decode()))
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        self.finished_slow = True
        return b"slept"

    async def chunks(self, request: bytes, ctx: Any) -> AsyncIterator[bytes]:
        count, size = (int(x) for x in request.decode().split("x"))
        for i in range(count):
            yield bytes([i % 256]) * size

    async def writes(self, request: bytes, ctx: Any) -> None:
        for word in request.split():
            await ctx.write(word)

    async def total(self, requests: AsyncIterator[bytes], ctx: Any) -> bytes:
        size = 0
        async for chunk in requests:
            size += len(chunk)
            await asyncio.sleep(0.001)  # a slow consumer: the client must wait for credit
        return str(size).encode()

    async def upper(self, requests: AsyncIterator[bytes], ctx: Any) -> AsyncIterator[bytes]:
        async for chunk in requests:
            yield chunk.upper()


def _handlers(probe: Probe) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    return {
        "Echo": grpc.unary_unary_rpc_method_handler(probe.echo),
        "Fail": grpc.unary_unary_rpc_method_handler(probe.fail),
        "Crash": grpc.unary_unary_rpc_method_handler(probe.crash),
        "Slow": grpc.unary_unary_rpc_method_handler(probe.slow),
        "Chunks": grpc.unary_stream_rpc_method_handler(probe.chunks),
        "Writes": grpc.unary_stream_rpc_method_handler(probe.writes),
        "Total": grpc.stream_unary_rpc_method_handler(probe.total),
        "Upper": grpc.stream_stream_rpc_method_handler(probe.upper),
    }


class _Version(version_pb2_grpc.VersionServicer):
    async def Version(self, request: empty_pb2.Empty, context: Any) -> Any:
        return version_pb2.VersionResponse(version="v9", revision="r1")


@pytest.fixture
async def served() -> AsyncIterator[tuple[Server, Probe, grpc.aio.Channel, str]]:
    with short_tmpdir() as tmp:
        sock = str(Path(tmp) / "h2.sock")
        server = Server(max_receive_message_length=16 * MiB, max_send_message_length=16 * MiB)
        probe = Probe()
        server.add_registered_method_handlers(SERVICE, _handlers(probe))
        version_pb2_grpc.add_VersionServicer_to_server(_Version(), server)  # type: ignore[arg-type]
        server.add_insecure_port("unix://" + sock)
        await server.start()
        channel = grpc.aio.insecure_channel(
            "unix://" + sock,
            options=[
                ("grpc.max_send_message_length", 64 * MiB),
                ("grpc.max_receive_message_length", 64 * MiB),
            ],
        )
        try:
            yield server, probe, channel, sock
        finally:
            await channel.close()
            await server.stop(0)


def _call(channel: grpc.aio.Channel, kind: str, name: str) -> Any:
    return getattr(channel, kind)(f"/{SERVICE}/{name}")


async def test_unary_metadata_and_deadline(served: Any) -> None:
    _, probe, channel, _ = served
    reply = await _call(channel, "unary_unary", "Echo")(
        b"hello", metadata=(("containerd-namespace", "ns1"),), timeout=30
    )
    assert reply == b"hello"
    assert probe.metadata["containerd-namespace"] == "ns1"
    # grpc-core rounds a timeout up as it encodes it (seen: 30.099 s sent for
    # 30): the handler may see a little more than the caller asked for.
    assert probe.remaining is not None and 25 < probe.remaining <= 30.5
    # Without a deadline the handler sees none.
    await _call(channel, "unary_unary", "Echo")(b"")
    assert probe.remaining is None


async def test_generated_servicer(served: Any) -> None:
    channel = served[2]
    reply = await version_pb2_grpc.VersionStub(channel).Version(empty_pb2.Empty())
    assert (reply.version, reply.revision) == ("v9", "r1")


@pytest.mark.parametrize("message", ["plain", "naïve 100% \u2603 \n tab\t", "", "long " * 4000])
async def test_abort_carries_code_and_message(served: Any, message: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _call(served[2], "unary_unary", "Fail")(message.encode())
    assert err.value.code() is grpc.StatusCode.NOT_FOUND
    if len(message) < 7000:
        assert err.value.details() == message
    else:  # cut, so that the client accepts the trailers
        details = err.value.details() or ""
        assert details.endswith("...") and message.startswith(details[:-3])
        assert 7000 < len(details) < 8 << 10


async def test_handler_exception_is_unknown(served: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _call(served[2], "unary_unary", "Crash")(b"")
    assert err.value.code() is grpc.StatusCode.UNKNOWN
    assert "boom" in (err.value.details() or "")


async def test_unknown_method_is_unimplemented(served: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await served[2].unary_unary(f"/{SERVICE}/Nope")(b"")
    assert err.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert "Nope" in (err.value.details() or "")


async def test_deadline_cancels_the_handler(served: Any) -> None:
    _, probe, channel, _ = served
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _call(channel, "unary_unary", "Slow")(b"30", timeout=0.3)
    assert err.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.wait_for(probe.cancelled.wait(), 5)


async def test_client_cancel_reaches_the_handler(served: Any) -> None:
    _, probe, channel, _ = served
    call = _call(channel, "unary_unary", "Slow")(b"30")
    await asyncio.wait_for(probe.started.wait(), 5)
    call.cancel()
    await asyncio.wait_for(probe.cancelled.wait(), 5)


async def test_server_stream_larger_than_every_window(served: Any) -> None:
    # 40 messages of 1 MiB: past the client's stream and connection windows.
    got = [m async for m in _call(served[2], "unary_stream", "Chunks")(b"40x1048576")]
    assert len(got) == 40
    assert all(len(m) == MiB and m[:1] == bytes([i]) for i, m in enumerate(got))


async def test_concurrent_streams_wait_for_the_transport_together(served: Any) -> None:
    # Several streams blocked on one full transport buffer must all resume.
    async def one() -> int:
        sizes = [len(m) async for m in _call(served[2], "unary_stream", "Chunks")(b"12x1048576")]
        return sum(sizes)

    sizes = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(4))), 60)
    assert sizes == [12 * MiB] * 4


async def test_stream_written_through_context(served: Any) -> None:
    got = [m async for m in _call(served[2], "unary_stream", "Writes")(b"a bb ccc")]
    assert got == [b"a", b"bb", b"ccc"]


async def test_client_stream_with_back_pressure(served: Any) -> None:
    # 24 MiB to a slow consumer: more than the stream window we grant (4 MiB).
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(12):
            yield b"x" * (2 * MiB)

    reply = await _call(served[2], "stream_unary", "Total")(chunks())
    assert reply == str(24 * MiB).encode()


async def test_bidi(served: Any) -> None:
    call = _call(served[2], "stream_stream", "Upper")()
    for word in (b"one", b"two", b"three"):
        await call.write(word)
        assert await call.read() == word.upper()
    await call.done_writing()
    assert await call.read() is grpc.aio.EOF
    assert await call.code() is grpc.StatusCode.OK


async def test_request_over_the_limit_is_resource_exhausted(served: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _call(served[2], "unary_unary", "Echo")(b"x" * (17 * MiB))
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in (err.value.details() or "")
    # The connection still serves.
    assert await _call(served[2], "unary_unary", "Echo")(b"ok") == b"ok"


async def test_many_concurrent_calls(served: Any) -> None:
    echo = _call(served[2], "unary_unary", "Echo")
    replies = await asyncio.gather(*(echo(str(i).encode()) for i in range(300)))
    assert replies == [str(i).encode() for i in range(300)]


async def test_graceful_stop_lets_calls_finish_and_refuses_new_ones(served: Any) -> None:
    server, probe, channel, sock = served
    call = _call(channel, "unary_unary", "Slow")(b"0.5")
    await asyncio.wait_for(probe.started.wait(), 5)
    await server.stop(10)
    assert await call == b"slept"
    assert probe.finished_slow
    assert not os.path.exists(sock) or not _accepts(sock)


async def test_stop_without_grace_cancels(served: Any) -> None:
    server, probe, channel, _ = served
    call = _call(channel, "unary_unary", "Slow")(b"30")
    await asyncio.wait_for(probe.started.wait(), 5)
    await server.stop(0)
    await asyncio.wait_for(probe.cancelled.wait(), 5)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


async def test_a_second_stop_cuts_the_drain_short(served: Any) -> None:
    server, probe, channel, _ = served
    call = _call(channel, "unary_unary", "Slow")(b"30")
    await asyncio.wait_for(probe.started.wait(), 5)
    drain = asyncio.ensure_future(server.stop(60))
    await asyncio.sleep(0.2)
    assert not drain.done()
    await asyncio.wait_for(server.stop(0), 5)
    await asyncio.wait_for(drain, 5)
    assert probe.cancelled.is_set()
    with contextlib.suppress(grpc.aio.AioRpcError):
        await call


def _accepts(sock: str) -> bool:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(sock)
    except OSError:
        return False
    finally:
        s.close()
    return True


async def test_a_peer_that_does_not_read_is_not_answered_without_bound(served: Any) -> None:
    from api.h2 import frames as f

    server, _, channel, sock = served
    _reader, writer = await asyncio.open_unix_connection(sock)
    # Requests for 1 MiB answers, never read: the server stops reading them
    # once its buffer for this peer is full, instead of queueing every answer.
    headers = bytes.fromhex("83") + f.literal(":path", f"/{SERVICE}/Chunks")
    request = b"1x1048576"
    body = f.MESSAGE_PREFIX.pack(0, len(request)) + request
    writer.write(f.PREFACE + f.settings({f.SETTINGS_INITIAL_WINDOW_SIZE: f.MAX_WINDOW}))
    writer.write(f.window_update(0, f.MAX_WINDOW - f.DEFAULT_WINDOW))
    for sid in range(1, 2 * 200, 2):
        writer.write(f.frame(f.HEADERS, f.END_HEADERS, sid, headers))
        writer.write(f.frame(f.DATA, f.END_STREAM, sid, body))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(writer.drain(), 3)
    await asyncio.sleep(0.5)
    (conn,) = [c for c in server.connections if c.last_sid > 1]
    assert conn.paused
    assert conn.last_sid < 399  # it stopped taking requests
    buffered = conn.transport.get_write_buffer_size()
    assert buffered < 4 * MiB, buffered  # one answer past the high-water mark
    # Other clients are still served.
    assert await _call(channel, "unary_unary", "Echo")(b"still") == b"still"
    writer.close()


async def test_a_peer_that_is_not_http2_is_dropped(served: Any) -> None:
    sock = served[3]
    reader, writer = await asyncio.open_unix_connection(sock)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)  # until the server closes
    writer.close()
    assert b"preface" in data  # GOAWAY's debug text says why
    # Others are unaffected.
    assert await _call(served[2], "unary_unary", "Echo")(b"still") == b"still"


async def test_headers_that_do_not_decode_end_the_connection(served: Any) -> None:
    from api.h2 import frames as f

    reader, writer = await asyncio.open_unix_connection(served[3])
    # A HEADERS block indexing past the end of the static table (index 126).
    writer.write(f.PREFACE + f.settings({}) + f.frame(f.HEADERS, f.END_HEADERS, 1, b"\xfe"))
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    # The last frame the server sent is a GOAWAY with COMPRESSION_ERROR.
    assert f.goaway(0, f.COMPRESSION_ERROR)[3:4] in data
    assert b"does not decode" in data


def _hstr(text: str) -> bytes:
    """An HPACK string literal, not Huffman-coded (short strings only)."""
    raw = text.encode()
    assert len(raw) < 127
    return bytes([len(raw)]) + raw


async def _answered(reader: asyncio.StreamReader, sid: int) -> None:
    """Read frames until the trailers of stream ``sid``."""
    from api.h2 import frames as f

    while True:
        head = await asyncio.wait_for(reader.readexactly(9), 5)
        word, flags, got = f.HEADER.unpack(head)
        await reader.readexactly(word >> 8)
        if word & 0xFF == f.HEADERS and flags & f.END_STREAM and got == sid:
            return


async def test_a_repeated_header_block_is_read_against_the_table_of_now(served: Any) -> None:
    # The server remembers what a header block said, for a client that sends
    # the same block again; once the dynamic table changed, the same bytes
    # say something else and must be read again.
    from api.h2 import frames as f

    _, probe, _, sock = served
    common = (
        b"\x83\x86"  # :method POST, :scheme http
        + b"\x04"  # :path, not indexed
        + _hstr(f"/{SERVICE}/Echo")
        + b"\x01"  # :authority, not indexed
        + _hstr("x")
        + b"\x0f\x10"  # content-type, not indexed
        + _hstr("application/grpc")
        + b"\x00"  # a new name, not indexed
        + _hstr("te")
        + _hstr("trailers")
    )

    def adding(value: str) -> bytes:  # x-who: value, added to the table (index 62)
        return common + b"\x40" + _hstr("x-who") + _hstr(value)

    newest = common + b"\xbe"  # index 62: the newest entry of the table
    reader, writer = await asyncio.open_unix_connection(sock)
    writer.write(f.PREFACE + f.settings({}))
    seen = []
    for sid, block in enumerate(
        [adding("a"), newest, newest, adding("b"), newest, newest], start=0
    ):
        sid = 2 * sid + 1
        message = f.MESSAGE_PREFIX.pack(0, 2) + b"hi"
        writer.write(
            f.frame(f.HEADERS, f.END_HEADERS, sid, block)
            + f.frame(f.DATA, f.END_STREAM, sid, message)
        )
        await writer.drain()
        await _answered(reader, sid)
        seen.append(probe.metadata["x-who"])
    writer.close()
    assert seen == ["a", "a", "a", "b", "b", "b"]
