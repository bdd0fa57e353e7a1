"""ttrpc at the frame level: each side against a raw peer that writes exact bytes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from api import errcodes, errdefs
from api.google.rpc.status_pb2 import Status
from api.ttrpc import Client, ConnectionClosed, Server
from api.ttrpc.framing import (
    DATA,
    FLAG_NO_DATA,
    FLAG_REMOTE_CLOSED,
    HEADER,
    HEADER_SIZE,
    REQUEST,
    RESPONSE,
)
from api.ttrpc.request_pb2 import KeyValue, Request, Response
from tests.ttrpc.conftest import SERVICE, BytesValue, EchoService, Int64Value, RawPeer, StringValue

SMALL = 1024


def request(method: str, payload: bytes = b"", **fields: object) -> bytes:
    return Request(service=SERVICE, method=method, payload=payload, **fields).SerializeToString()  # type: ignore[arg-type]


def echo_request(value: str) -> bytes:
    return request("Echo", StringValue(value=value).SerializeToString())


def status_of(data: bytes) -> Status:
    return Response.FromString(data).status


@pytest.fixture
async def small_server(tmp: Path, service: EchoService) -> AsyncIterator[str]:
    """A server whose message limit is SMALL bytes."""
    server = Server(max_message_size=SMALL)
    server.register(SERVICE, service.methods())
    path = str(tmp / "small.sock")
    await server.serve_unix(path)
    try:
        yield path
    finally:
        await server.close(0)


@pytest.fixture
async def raw(server_path: str) -> AsyncIterator[RawPeer]:
    peer = await RawPeer.connect(server_path)
    try:
        yield peer
    finally:
        await peer.close()


async def assert_echo(peer: RawPeer, stream_id: int, value: str) -> None:
    await peer.send(stream_id, REQUEST, 0, echo_request(value))
    sid, mtype, flags, data = await peer.recv()
    assert (sid, mtype, flags) == (stream_id, RESPONSE, 0)
    resp = Response.FromString(data)
    assert resp.status.code == 0
    assert StringValue.FromString(resp.payload).value == value


# -- the server, driven by a raw client ----------------------------------------


async def test_unary_answer_carries_an_ok_status(raw: RawPeer) -> None:
    await raw.send(1, REQUEST, 0, echo_request("x"))
    _, _, _, data = await raw.recv()
    resp = Response.FromString(data)
    # ttrpc's server always sets the status, OK included.
    assert resp.HasField("status") and resp.status.code == 0


async def test_server_refuses_an_oversize_frame_and_stays_usable(small_server: str) -> None:
    peer = await RawPeer.connect(small_server)
    try:
        body = b"\0" * (SMALL + 1)
        # The body arrives in pieces; the server skips it without buffering.
        raw_frame = peer.frame(1, REQUEST, 0, body)
        for i in range(0, len(raw_frame), 300):
            await peer.write(raw_frame[i : i + 300])
        sid, mtype, _, data = await peer.recv()
        assert (sid, mtype) == (1, RESPONSE)
        st = status_of(data)
        assert st.code == errcodes.RESOURCE_EXHAUSTED
        assert st.message == f"message length {SMALL + 1} exceed maximum message size of {SMALL}"
        await assert_echo(peer, 3, "after")
    finally:
        await peer.close()


async def test_server_answers_a_huge_header_at_once(small_server: str) -> None:
    peer = await RawPeer.connect(small_server)
    try:
        await peer.write(HEADER.pack(0xFFFFFFF0, 5, REQUEST, 0))
        sid, _, _, data = await peer.recv()
        assert sid == 5
        assert status_of(data).code == errcodes.RESOURCE_EXHAUSTED
        assert str(0xFFFFFFF0) in status_of(data).message
    finally:
        await peer.close()


async def test_even_stream_id_is_refused(raw: RawPeer) -> None:
    await raw.send(2, REQUEST, 0, echo_request("x"))
    sid, mtype, _, data = await raw.recv()
    assert (sid, mtype) == (2, RESPONSE)
    st = status_of(data)
    assert (st.code, st.message) == (
        errcodes.INVALID_ARGUMENT,
        "StreamID must be odd for client initiated streams",
    )
    await assert_echo(raw, 3, "ok")


async def test_stream_ids_must_increase(raw: RawPeer) -> None:
    await assert_echo(raw, 7, "first")
    await raw.send(5, REQUEST, 0, echo_request("x"))
    sid, _, _, data = await raw.recv()
    st = status_of(data)
    assert sid == 5
    assert (st.code, st.message) == (
        errcodes.INVALID_ARGUMENT,
        "StreamID cannot be re-used and must increment",
    )


async def test_undecodable_envelope_is_invalid_argument(raw: RawPeer) -> None:
    await raw.send(1, REQUEST, 0, b"\xff\xff\xff")
    _, _, _, data = await raw.recv()
    st = status_of(data)
    assert st.code == errcodes.INVALID_ARGUMENT
    assert st.message.startswith("unmarshal request error")
    await assert_echo(raw, 3, "ok")


async def test_data_on_an_unknown_stream_is_refused(raw: RawPeer) -> None:
    await raw.send(9, DATA, 0, b"")
    sid, _, _, data = await raw.recv()
    assert sid == 9
    st = status_of(data)
    assert (st.code, st.message) == (errcodes.INVALID_ARGUMENT, "StreamID is no longer active")


async def test_unknown_message_type_is_ignored(raw: RawPeer) -> None:
    await raw.send(1, 0x7F, 0, b"future")
    await assert_echo(raw, 3, "still here")


async def test_frames_split_byte_by_byte(raw: RawPeer) -> None:
    frame = raw.frame(1, REQUEST, 0, echo_request("split"))
    for i in range(len(frame)):
        await raw.write(frame[i : i + 1])
        await asyncio.sleep(0)
    _, _, _, data = await raw.recv()
    assert StringValue.FromString(Response.FromString(data).payload).value == "split"


async def test_frames_coalesced_in_one_write(raw: RawPeer) -> None:
    await raw.write(b"".join(raw.frame(i, REQUEST, 0, echo_request(str(i))) for i in (1, 3, 5)))
    answers = {}
    for _ in range(3):
        sid, _, _, data = await raw.recv()
        answers[sid] = StringValue.FromString(Response.FromString(data).payload).value
    assert answers == {1: "1", 3: "3", 5: "5"}


async def test_server_deadline_from_timeout_nano(raw: RawPeer, service: EchoService) -> None:
    payload = StringValue(value="late").SerializeToString()
    await raw.send(1, REQUEST, 0, request("Wait", payload, timeout_nano=50_000_000))
    sid, _, _, data = await raw.recv()
    assert sid == 1
    assert status_of(data).code == errcodes.DEADLINE_EXCEEDED
    assert service.cancelled_event("late").is_set()


async def test_client_leaving_mid_frame_cancels_its_calls(tmp: Path, service: EchoService) -> None:
    server = Server()
    server.register(SERVICE, service.methods())
    path = str(tmp / "s.sock")
    await server.serve_unix(path)
    peer = await RawPeer.connect(path)
    await peer.send(1, REQUEST, 0, request("Wait", StringValue(value="w").SerializeToString()))
    await asyncio.wait_for(service.started_event("w").wait(), 30)
    half = peer.frame(3, REQUEST, 0, echo_request("never"))
    await peer.write(half[: len(half) // 2])
    await peer.close()
    await asyncio.wait_for(service.cancelled_event("w").wait(), 30)
    await asyncio.wait_for(server.close(0), 30)


# -- the client, against a raw server --------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw_server(tmp: Path) -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> str:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await handler(reader, writer)
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()

        path = str(tmp / f"raw{len(servers)}.sock")
        servers.append(await asyncio.start_unix_server(run, path))
        return path

    yield start
    for s in servers:
        s.close()
        await s.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> tuple[int, int, Request]:
    length, sid, mtype, flags = HEADER.unpack(await reader.readexactly(HEADER_SIZE))
    assert mtype == REQUEST
    return sid, flags, Request.FromString(await reader.readexactly(length))


def response_frame(sid: int, message: bytes = b"", status: Status | None = None) -> bytes:
    data = Response(status=status or Status(), payload=message).SerializeToString()
    return HEADER.pack(len(data), sid, RESPONSE, 0) + data


async def test_out_of_order_split_and_coalesced_answers(
    raw_server: Callable[[Handler], Awaitable[str]],
) -> None:
    seen: list[tuple[int, str, int]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests = [await read_request(reader) for _ in range(4)]
        for sid, flags, req in requests:
            seen.append((sid, req.method, flags))
        answers = b"".join(
            response_frame(sid, StringValue(value=f"{sid}").SerializeToString())
            for sid, _, _ in reversed(requests)
        )
        # Reversed order; the first chunk ends mid-header, the next mid-payload.
        for cut in (5, 23, len(answers)):
            writer.write(answers[:cut])
            answers = answers[cut:]
            await writer.drain()
            await asyncio.sleep(0)
        await reader.read()  # until the client closes

    client = await Client.connect(await raw_server(handle))
    try:
        calls = [
            client.call(SERVICE, "Echo", StringValue(value=str(i)), StringValue) for i in range(4)
        ]
        results = await asyncio.gather(*calls)
    finally:
        await client.close()
    assert [r.value for r in results] == ["1", "3", "5", "7"]
    assert seen == [(1, "Echo", 0), (3, "Echo", 0), (5, "Echo", 0), (7, "Echo", 0)]


async def test_request_carries_timeout_and_metadata(
    raw_server: Callable[[Handler], Awaitable[str]],
) -> None:
    got: list[Request] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sid, _, req = await read_request(reader)
        got.append(req)
        writer.write(response_frame(sid))
        await writer.drain()
        await reader.read()

    client = await Client.connect(await raw_server(handle))
    try:
        await client.call(
            SERVICE,
            "Echo",
            StringValue(value="v"),
            StringValue,
            timeout=2.5,
            metadata={"K": ["1", "2"], "ns": "x"},
        )
    finally:
        await client.close()
    (req,) = got
    assert req.timeout_nano == 2_500_000_000
    assert list(req.metadata) == [
        KeyValue(key="k", value="1"),
        KeyValue(key="k", value="2"),
        KeyValue(key="ns", value="x"),
    ]
    assert StringValue.FromString(req.payload).value == "v"


async def test_peer_closing_mid_frame_fails_every_pending_call(
    raw_server: Callable[[Handler], Awaitable[str]],
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sid, _, _ = await read_request(reader)
        await read_request(reader)
        frame = response_frame(sid, StringValue(value="cut").SerializeToString())
        writer.write(frame[: HEADER_SIZE + 3])
        await writer.drain()
        writer.close()

    client = await Client.connect(await raw_server(handle))
    lost: list[bool] = []
    client.on_close(lambda: lost.append(True))
    calls = [
        asyncio.create_task(client.call(SERVICE, "Echo", StringValue(), StringValue))
        for _ in range(2)
    ]
    stream = client.stream(
        SERVICE,
        "Count",
        Int64Value(value=1),
        StringValue,
        client_streaming=False,
        server_streaming=True,
    )
    for call in calls:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(call, 30)
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(stream.recv(), 30)
    assert lost == [True]
    assert client.closed
    await client.close()


async def test_client_refuses_to_send_an_oversize_message(
    server_path: str, service: EchoService
) -> None:
    client = await Client.connect(server_path, max_message_size=SMALL)
    try:
        with pytest.raises(errdefs.ResourceExhausted) as info:
            await client.call(SERVICE, "Echo", StringValue(value="y" * SMALL), StringValue)
        assert f"exceed maximum message size of {SMALL}" in info.value.message
        assert "message length " in info.value.message
        assert not service.contexts  # nothing was sent
        out = await client.call(SERVICE, "Echo", StringValue(value="small"), StringValue)
        assert out.value == "small"
    finally:
        await client.close()


async def test_client_refuses_an_oversize_answer_and_stays_usable(server_path: str) -> None:
    client = await Client.connect(server_path, max_message_size=SMALL)
    try:
        with pytest.raises(errdefs.ResourceExhausted) as info:
            await client.call(SERVICE, "Big", Int64Value(value=4 * SMALL), BytesValue)
        assert f"exceed maximum message size of {SMALL}" in info.value.message
        out = await client.call(SERVICE, "Big", Int64Value(value=10), BytesValue)
        assert out.value == b"x" * 10
    finally:
        await client.close()


async def test_server_refuses_to_send_an_oversize_answer(small_server: str) -> None:
    client = await Client.connect(small_server)
    try:
        with pytest.raises(errdefs.ResourceExhausted, match=f"maximum message size of {SMALL}"):
            await client.call(SERVICE, "Big", Int64Value(value=2 * SMALL), BytesValue)
        out = await client.call(SERVICE, "Echo", StringValue(value="next"), StringValue)
        assert out.value == "next"
    finally:
        await client.close()


async def test_unexpected_frames_for_unary_calls(
    raw_server: Callable[[Handler], Awaitable[str]],
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sid, _, _ = await read_request(reader)
        writer.write(response_frame(sid + 100))  # nobody waits on that stream: dropped
        writer.write(HEADER.pack(0, sid, DATA, FLAG_REMOTE_CLOSED | FLAG_NO_DATA))
        sid, _, _ = await read_request(reader)
        writer.write(response_frame(sid, StringValue(value="fine").SerializeToString()))
        await writer.drain()
        await reader.read()

    client = await Client.connect(await raw_server(handle))
    try:
        with pytest.raises(errdefs.Internal, match="protocol error"):
            await client.call(SERVICE, "Echo", StringValue(), StringValue)
        out = await client.call(SERVICE, "Echo", StringValue(), StringValue)
        assert out.value == "fine"
    finally:
        await client.close()


async def test_error_status_from_a_peer(raw_server: Callable[[Handler], Awaitable[str]]) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for message in ("thing: conflict", "other: not modified", "plain"):
            sid, _, _ = await read_request(reader)
            status = Status(code=errcodes.FAILED_PRECONDITION, message=message)
            writer.write(response_frame(sid, status=status))
        sid, _, _ = await read_request(reader)
        writer.write(response_frame(sid, status=Status(code=99, message="odd")))
        await writer.drain()
        await reader.read()

    client = await Client.connect(await raw_server(handle))
    try:
        raised = []
        for _ in range(4):
            with pytest.raises(errdefs.ErrdefsError) as info:
                await client.call(SERVICE, "Echo", StringValue(), StringValue)
            raised.append((type(info.value), info.value.message))
    finally:
        await client.close()
    assert raised == [
        (errdefs.Conflict, "thing"),
        (errdefs.NotModified, "other"),
        (errdefs.FailedPrecondition, "plain"),
        (errdefs.Unknown, "odd"),
    ]
