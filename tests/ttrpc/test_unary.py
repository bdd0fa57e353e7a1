"""Unary calls between our client and our server over a real unix socket."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from api import errdefs
from api.ttrpc import Client, ConnectionClosed
from tests.ttrpc.conftest import SERVICE, EchoService, Empty, Int64Value, StringValue


async def test_echo(client: Client, service: EchoService) -> None:
    out = await client.call(SERVICE, "Echo", StringValue(value="hello"), StringValue)
    assert out == StringValue(value="hello")
    (ctx,) = service.contexts
    assert (ctx.service, ctx.method, ctx.metadata, ctx.deadline) == (SERVICE, "Echo", {}, None)


async def test_empty_messages_round_trip(client: Client) -> None:
    assert await client.call(SERVICE, "Echo", StringValue(), StringValue) == StringValue()


async def test_metadata_round_trip(client: Client) -> None:
    md = {
        "containerd-namespace-ttrpc": "ns1",
        "Mixed-Case": "v",
        "multi": ["a", "b", "c"],
    }
    out = await client.call(SERVICE, "Meta", Empty(), StringValue, metadata=md, timeout=30)
    seen = json.loads(out.value)
    assert seen["metadata"] == {
        "containerd-namespace-ttrpc": ["ns1"],
        "mixed-case": ["v"],  # ttrpc's MD.Set lower-cases keys
        "multi": ["a", "b", "c"],
    }
    assert seen["namespace"] == "ns1"
    assert seen["has_deadline"] is True


async def test_context_lookup_and_namespace(client: Client, service: EchoService) -> None:
    await client.call(
        SERVICE, "Echo", StringValue(), StringValue, metadata={"containerd-namespace-ttrpc": "k8s"}
    )
    ctx = service.contexts[-1]
    assert ctx.get("CONTAINERD-NAMESPACE-TTRPC") == "k8s"
    assert ctx.get("absent") is None
    assert ctx.namespace_required() == "k8s"


async def test_invalid_namespace_is_rejected(client: Client, service: EchoService) -> None:
    await client.call(
        SERVICE, "Echo", StringValue(), StringValue, metadata={"containerd-namespace-ttrpc": "a/b"}
    )
    with pytest.raises(errdefs.InvalidArgument, match="namespace"):
        service.contexts[-1].namespace()


async def test_missing_namespace_is_a_failed_precondition(
    client: Client, service: EchoService
) -> None:
    await client.call(SERVICE, "Echo", StringValue(), StringValue)
    with pytest.raises(errdefs.FailedPrecondition, match="namespace is required"):
        service.contexts[-1].namespace_required()


async def test_unknown_service_is_unimplemented(client: Client) -> None:
    with pytest.raises(errdefs.NotImplemented) as info:
        await client.call("no.such.Service", "Echo", Empty(), Empty)
    assert info.value.message == "service no.such.Service"


async def test_unknown_method_is_unimplemented(client: Client) -> None:
    with pytest.raises(errdefs.NotImplemented) as info:
        await client.call(SERVICE, "Nope", Empty(), Empty)
    assert info.value.message == "method Nope"


@pytest.mark.parametrize("cls", errdefs.ALL_CLASSES, ids=lambda c: c.__name__)
async def test_typed_error_round_trips(client: Client, cls: type[errdefs.ErrdefsError]) -> None:
    with pytest.raises(errdefs.ErrdefsError) as info:
        await client.call(SERVICE, "Raise", StringValue(value=f"{cls.__name__}:boom"), Empty)
    assert type(info.value) is cls
    assert info.value.message == "boom"


async def test_untyped_exception_is_internal_without_detail(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.ERROR, logger="api.ttrpc.status"),
        pytest.raises(errdefs.Internal) as info,
    ):
        await client.call(SERVICE, "Raise", StringValue(value="ZeroDivisionError:"), Empty)
    assert str(info.value) == "internal error: internal"
    assert "secret" not in str(info.value)
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[0] is ZeroDivisionError]
    assert logged, "the server logs the traceback it does not send"


async def test_undecodable_request_is_invalid_argument(client: Client) -> None:
    # A StringValue whose field 1 holds invalid UTF-8 does not decode as a StringValue.
    from google.protobuf import wrappers_pb2

    bogus = wrappers_pb2.BytesValue(value=b"\xff\xfe")
    with pytest.raises(errdefs.InvalidArgument, match=r"google\.protobuf\.StringValue"):
        await client.call(SERVICE, "Echo", bogus, StringValue)


async def test_client_timeout_leaves_the_connection_usable(
    client: Client, service: EchoService
) -> None:
    with pytest.raises(errdefs.DeadlineExceeded):
        await client.call(SERVICE, "Wait", StringValue(value="slow"), StringValue, timeout=0.05)
    # The server got the deadline too and cancelled the handler.
    await asyncio.wait_for(service.cancelled_event("slow").wait(), 30)
    out = await client.call(SERVICE, "Echo", StringValue(value="after"), StringValue)
    assert out.value == "after"


async def test_nonpositive_timeout_fails_without_sending(
    client: Client, service: EchoService
) -> None:
    with pytest.raises(errdefs.DeadlineExceeded):
        await client.call(SERVICE, "Echo", StringValue(), StringValue, timeout=0)
    assert not service.contexts


async def test_cancelled_call_leaves_the_connection_usable(
    client: Client, service: EchoService
) -> None:
    call = asyncio.create_task(client.call(SERVICE, "Wait", StringValue(value="c"), StringValue))
    await asyncio.wait_for(service.started_event("c").wait(), 30)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    # The late answer to the forgotten stream is dropped; later calls are unaffected.
    service.gate("c").set()
    for i in range(3):
        out = await client.call(SERVICE, "Echo", StringValue(value=str(i)), StringValue)
        assert out.value == str(i)


async def test_concurrent_calls_answered_out_of_order(client: Client, service: EchoService) -> None:
    keys = [f"k{i}" for i in range(20)]
    calls = [
        asyncio.create_task(client.call(SERVICE, "Wait", StringValue(value=k), StringValue))
        for k in keys
    ]
    for k in keys:
        await asyncio.wait_for(service.started_event(k).wait(), 30)
    for k in reversed(keys):  # answer the last request first
        service.gate(k).set()
        await asyncio.sleep(0)
    results = await asyncio.gather(*calls)
    assert [r.value for r in results] == keys


async def test_many_concurrent_calls_on_one_connection(client: Client) -> None:
    results = await asyncio.gather(
        *(client.call(SERVICE, "Echo", StringValue(value=str(i)), StringValue) for i in range(500))
    )
    assert [r.value for r in results] == [str(i) for i in range(500)]


async def test_server_sees_the_client_deadline(client: Client, service: EchoService) -> None:
    loop = asyncio.get_running_loop()
    before = loop.time()
    await client.call(SERVICE, "Echo", StringValue(), StringValue, timeout=100)
    ctx = service.contexts[-1]
    assert ctx.deadline is not None
    assert before < ctx.deadline <= loop.time() + 100
    remaining = ctx.time_remaining()
    assert remaining is not None and 0 < remaining <= 100


async def test_close_fails_pending_calls_and_runs_on_close_once(
    client: Client, service: EchoService
) -> None:
    closed: list[str] = []
    client.on_close(lambda: closed.append("a"))
    call = asyncio.create_task(client.call(SERVICE, "Wait", StringValue(value="p"), StringValue))
    await asyncio.wait_for(service.started_event("p").wait(), 30)
    await client.close()
    with pytest.raises(ConnectionClosed):
        await call
    assert client.closed
    assert closed == ["a"]
    await client.close()  # idempotent
    assert closed == ["a"]
    late: list[str] = []
    client.on_close(lambda: late.append("b"))  # registered after the close: called soon
    await asyncio.sleep(0)
    assert late == ["b"]
    with pytest.raises(ConnectionClosed):
        await client.call(SERVICE, "Echo", StringValue(), StringValue)
    with pytest.raises(ConnectionClosed):
        client.stream(
            SERVICE,
            "Count",
            Int64Value(value=1),
            StringValue,
            client_streaming=False,
            server_streaming=True,
        )


async def test_connection_closed_is_unavailable(client: Client) -> None:
    await client.close()
    with pytest.raises(errdefs.Unavailable):
        await client.call(SERVICE, "Echo", StringValue(), StringValue)


async def test_connect_to_nothing_is_unavailable(tmp: object) -> None:
    with pytest.raises(errdefs.Unavailable, match=r"nothing\.sock"):
        await Client.connect(f"{tmp}/nothing.sock")


async def test_connect_accepts_unix_addresses(server_path: str) -> None:
    c = await Client.connect("unix://" + server_path, timeout=10)
    try:
        out = await c.call(SERVICE, "Echo", StringValue(value="u"), StringValue)
        assert out.value == "u"
    finally:
        await c.close()
