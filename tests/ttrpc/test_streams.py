"""Streaming calls (ttrpc 1.2): server, client and bidirectional streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from api import errdefs
from api.ttrpc import Client, ConnectionClosed, Context, Server, ServerStream, StreamMethod
from api.ttrpc import connection as ttrpc_connection
from api.ttrpc.framing import DATA, FLAG_NO_DATA, FLAG_REMOTE_CLOSED, FLAG_REMOTE_OPEN, REQUEST
from api.ttrpc.request_pb2 import Request, Response
from tests.ttrpc.conftest import SERVICE, EchoService, Empty, Int64Value, RawPeer, StringValue


async def test_server_streaming(client: Client) -> None:
    stream = client.stream(
        SERVICE,
        "Count",
        Int64Value(value=5),
        StringValue,
        client_streaming=False,
        server_streaming=True,
    )
    assert [m.value async for m in stream] == ["0", "1", "2", "3", "4"]
    assert await stream.recv() is None  # stays ended


async def test_server_streaming_with_no_messages(client: Client) -> None:
    stream = client.stream(
        SERVICE,
        "Count",
        Int64Value(value=0),
        StringValue,
        client_streaming=False,
        server_streaming=True,
    )
    assert [m async for m in stream] == []


async def test_server_streaming_from_an_empty_request(client: Client) -> None:
    stream = client.stream(
        SERVICE, "Nothing", Empty(), StringValue, client_streaming=False, server_streaming=True
    )
    assert [m.value async for m in stream] == ["got empty"]


async def test_server_stream_error_after_messages(client: Client) -> None:
    stream = client.stream(
        SERVICE,
        "Count",
        Int64Value(value=-3),
        StringValue,
        client_streaming=False,
        server_streaming=True,
    )
    got = []
    with pytest.raises(errdefs.NotFound, match="after 3"):
        async for m in stream:
            got.append(m.value)
    assert got == ["0", "1", "2"]


async def test_client_streaming(client: Client) -> None:
    stream = client.stream(
        SERVICE, "Sum", None, Int64Value, client_streaming=True, server_streaming=False
    )
    for i in range(1, 11):
        await stream.send(Int64Value(value=i))
    await stream.close_send()
    await stream.close_send()  # idempotent
    out = await stream.recv()
    assert out == Int64Value(value=55)
    assert await stream.recv() is None
    with pytest.raises(errdefs.FailedPrecondition):
        await stream.send(Int64Value(value=1))


async def test_client_streaming_with_a_first_request(client: Client) -> None:
    stream = client.stream(
        SERVICE,
        "Sum",
        Int64Value(value=100),
        Int64Value,
        client_streaming=True,
        server_streaming=False,
    )
    await stream.send(Int64Value(value=1))
    await stream.close_send()
    assert await stream.recv() == Int64Value(value=101)


async def test_bidirectional_streaming(client: Client) -> None:
    async with client.stream(
        SERVICE, "Chat", None, StringValue, client_streaming=True, server_streaming=True
    ) as stream:
        for word in ("a", "b", "c"):
            await stream.send(StringValue(value=word))
            reply = await stream.recv()
            assert reply is not None and reply.value == word.upper()
        await stream.close_send()
        assert [m.value async for m in stream] == ["done"]


async def test_streams_interleave_with_unary_calls(client: Client) -> None:
    streams = [
        client.stream(
            SERVICE, "Chat", None, StringValue, client_streaming=True, server_streaming=True
        )
        for _ in range(5)
    ]
    for round_ in range(3):
        for i, s in enumerate(reversed(streams)):
            await s.send(StringValue(value=f"s{i}r{round_}"))
        echo = await client.call(SERVICE, "Echo", StringValue(value="u"), StringValue)
        assert echo.value == "u"
        for i, s in enumerate(reversed(streams)):
            reply = await s.recv()
            assert reply is not None and reply.value == f"S{i}R{round_}"
    for s in streams:
        await s.close_send()
        assert [m.value async for m in s] == ["done"]


async def test_misuse_is_refused_locally(client: Client) -> None:
    stream = client.stream(
        SERVICE,
        "Count",
        Int64Value(value=1),
        StringValue,
        client_streaming=False,
        server_streaming=True,
    )
    with pytest.raises(errdefs.FailedPrecondition):
        await stream.send(Int64Value(value=1))
    with pytest.raises(errdefs.FailedPrecondition):
        await stream.close_send()
    assert [m.value async for m in stream] == ["0"]


async def test_stream_timeout(client: Client, service: EchoService) -> None:
    stream = client.stream(
        SERVICE,
        "Sum",
        None,
        Int64Value,
        client_streaming=True,
        server_streaming=False,
        timeout=0.05,
    )
    with pytest.raises(errdefs.DeadlineExceeded):
        await stream.recv()
    out = await client.call(SERVICE, "Echo", StringValue(value="ok"), StringValue)
    assert out.value == "ok"


async def test_cancelled_stream_is_forgotten(client: Client) -> None:
    stream = client.stream(
        SERVICE,
        "Count",
        Int64Value(value=50),
        StringValue,
        client_streaming=False,
        server_streaming=True,
    )
    first = await stream.recv()
    assert first is not None and first.value == "0"
    stream.cancel()
    with pytest.raises(errdefs.Canceled):
        await stream.recv()
    out = await client.call(SERVICE, "Echo", StringValue(value="ok"), StringValue)
    assert out.value == "ok"


async def test_slow_reader_gets_every_message(client: Client) -> None:
    """Far more messages than the inbox holds: reading pauses, nothing is lost."""
    n = 10 * ttrpc_connection.INBOX_LIMIT
    stream = client.stream(
        SERVICE,
        "Count",
        Int64Value(value=n),
        StringValue,
        client_streaming=False,
        server_streaming=True,
    )
    got = []
    async for m in stream:
        got.append(int(m.value))
        if len(got) % 50 == 0:
            await asyncio.sleep(0.01)
    assert got == list(range(n))


async def test_stuck_reader_fails_only_its_stream(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ttrpc_connection, "STREAM_FULL_WAIT", 0.05)
    n = 3 * ttrpc_connection.INBOX_LIMIT
    stuck = client.stream(
        SERVICE,
        "Count",
        Int64Value(value=n),
        StringValue,
        client_streaming=False,
        server_streaming=True,
    )
    # Nobody reads `stuck`; other calls on the connection still complete.
    for _ in range(3):
        out = await client.call(SERVICE, "Echo", StringValue(value="x"), StringValue)
        assert out.value == "x"
    got = []
    with pytest.raises(errdefs.ResourceExhausted, match="stream buffer full"):
        async for m in stuck:
            got.append(int(m.value))
    assert got == list(range(len(got)))
    assert ttrpc_connection.INBOX_LIMIT <= len(got) < n


# -- the server's side of streams -----------------------------------------------


@pytest.fixture
async def recording_server(tmp: Path) -> AsyncIterator[tuple[str, list[object]]]:
    seen: list[object] = []

    async def collect(stream: ServerStream[StringValue, StringValue], ctx: Context) -> StringValue:
        async for m in stream:
            seen.append(m.value)
        seen.append(None)
        return StringValue(value=f"{len(seen) - 1}")

    server = Server()
    server.register(SERVICE, {"Collect": StreamMethod(StringValue, collect, True, False)})
    path = str(tmp / "rec.sock")
    await server.serve_unix(path)
    try:
        yield path, seen
    finally:
        await server.close(0)


async def test_server_receives_client_frames(
    recording_server: tuple[str, list[object]],
) -> None:
    path, seen = recording_server
    peer = await RawPeer.connect(path)
    try:
        req = Request(service=SERVICE, method="Collect").SerializeToString()
        await peer.send(1, REQUEST, FLAG_REMOTE_OPEN, req)
        await peer.send(1, DATA, 0, StringValue(value="a").SerializeToString())
        await peer.send(1, DATA, 0, b"")  # an empty message is still a message
        await peer.send(1, DATA, FLAG_REMOTE_CLOSED | FLAG_NO_DATA, b"")
        sid, _mtype, _, data = await peer.recv()
        resp = Response.FromString(data)
        assert (sid, resp.status.code) == (1, 0)
        assert StringValue.FromString(resp.payload).value == "2"
        assert seen == ["a", "", None]
    finally:
        await peer.close()


async def test_server_streaming_ends_with_a_closing_data_frame(
    server_path: str,
) -> None:
    peer = await RawPeer.connect(server_path)
    try:
        req = Request(
            service=SERVICE, method="Count", payload=Int64Value(value=2).SerializeToString()
        ).SerializeToString()
        await peer.send(1, REQUEST, FLAG_REMOTE_CLOSED, req)
        frames = [await peer.recv() for _ in range(3)]
        assert [(sid, mtype, flags) for sid, mtype, flags, _ in frames] == [
            (1, DATA, 0),
            (1, DATA, 0),
            (1, DATA, FLAG_REMOTE_CLOSED | FLAG_NO_DATA),
        ]
        assert [StringValue.FromString(d).value for *_, d in frames[:2]] == ["0", "1"]
    finally:
        await peer.close()


async def test_connection_loss_fails_open_streams(tmp: Path, service: EchoService) -> None:
    server = Server()
    server.register(SERVICE, service.methods())
    path = str(tmp / "x.sock")
    await server.serve_unix(path)
    client = await Client.connect(path)
    stream = client.stream(
        SERVICE, "Chat", None, StringValue, client_streaming=True, server_streaming=True
    )
    await stream.send(StringValue(value="hi"))
    assert (await stream.recv()) == StringValue(value="HI")
    await server.close(0)
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(stream.recv(), 30)
    with pytest.raises(ConnectionClosed):
        await stream.send(StringValue(value="again"))
    await client.close()
