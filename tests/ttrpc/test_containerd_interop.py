"""Our client against a real ttrpc server: containerd's own ttrpc socket (events Forward).

containerd 1.6 serves ``containerd.services.events.ttrpc.v1.Events`` on
``<grpc address>.ttrpc`` with github.com/containerd/ttrpc v1.1.1, the server
side of what a shim talks to.  A forwarded event must come out of containerd's
gRPC Subscribe unchanged; its error answers must arrive as the right typed
errors.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2, empty_pb2, timestamp_pb2

from api import errdefs, namespaces
from api.containerd.events import task_pb2
from api.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from api.containerd.services.namespaces.v1 import namespace_pb2, namespace_pb2_grpc
from api.containerd.services.ttrpc.events.v1 import events_pb2 as tevents_pb2
from api.containerd.types import event_pb2
from api.ttrpc import Client
from tests.support import short_tmpdir
from tests.support.containerd import Containerd, need_containerd

pytestmark = [pytest.mark.containerd, pytest.mark.root]

EVENTS = "containerd.services.events.ttrpc.v1.Events"
NS = "ttrpc-interop"
MD = {namespaces.TTRPC_HEADER: NS}
GO_TTRPC_MAX = 4 << 20


@pytest.fixture(scope="module")
def containerd() -> Iterator[Containerd]:
    need_containerd()
    with short_tmpdir("ttcd") as d, Containerd(d / "cd") as cd:
        yield cd


@pytest.fixture
async def client(containerd: Containerd) -> AsyncIterator[Client]:
    c = await Client.connect(containerd.address + ".ttrpc", timeout=10)
    try:
        yield c
    finally:
        await c.close()


def envelope(topic: str, event: task_pb2.TaskExit, namespace: str = NS) -> event_pb2.Envelope:
    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    packed = any_pb2.Any()
    packed.Pack(event, type_url_prefix="")
    packed.type_url = "containerd.events.TaskExit"
    return event_pb2.Envelope(timestamp=ts, namespace=namespace, topic=topic, event=packed)


async def forward(client: Client, env: event_pb2.Envelope) -> None:
    await client.call(
        EVENTS,
        "Forward",
        tevents_pb2.ForwardRequest(envelope=env),
        empty_pb2.Empty,
        metadata=MD,
        timeout=10,
    )


@contextlib.asynccontextmanager
async def subscription(containerd: Containerd) -> AsyncIterator[list[event_pb2.Envelope]]:
    """Every envelope containerd publishes while the block runs (subscription live on entry)."""
    got: list[event_pb2.Envelope] = []
    async with grpc.aio.insecure_channel("unix://" + containerd.address) as channel:
        call = events_pb2_grpc.EventsStub(channel).Subscribe(events_pb2.SubscribeRequest())

        async def read() -> None:
            async for env in call:
                got.append(env)

        reader = asyncio.create_task(read())
        ns_stub = namespace_pb2_grpc.NamespacesStub(channel)
        try:
            # The subscription is live once it sees an event published after it started.
            for attempt in range(100):
                name = f"probe-{attempt}"
                await ns_stub.Create(
                    namespace_pb2.CreateNamespaceRequest(
                        namespace=namespace_pb2.Namespace(name=name)
                    ),
                    metadata=namespaces.outgoing("default"),
                )
                if await wait_until(lambda: any(e.topic == "/namespaces/create" for e in got), 0.2):
                    break
            else:
                raise AssertionError("containerd's event subscription never became live")
            yield got
        finally:
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def wait_until(condition: object, limit: float) -> bool:
    assert callable(condition)
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not condition():
        if loop.time() > end:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_forwarded_event_reaches_subscribers(containerd: Containerd, client: Client) -> None:
    exit_event = task_pb2.TaskExit(container_id="c1", id="c1", pid=42, exit_status=3)
    async with subscription(containerd) as got:
        await forward(client, envelope("/tasks/exit", exit_event))
        assert await wait_until(lambda: any(e.topic == "/tasks/exit" for e in got), 30)
    (env,) = [e for e in got if e.topic == "/tasks/exit"]
    assert env.namespace == NS
    assert env.event.type_url == "containerd.events.TaskExit"
    assert task_pb2.TaskExit.FromString(env.event.value) == exit_event


async def test_concurrent_calls_on_one_connection(client: Client) -> None:
    event = task_pb2.TaskExit(container_id="many")
    await asyncio.gather(*(forward(client, envelope("/tasks/exit", event)) for _ in range(200)))


async def test_typed_error_from_containerd(client: Client) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="invalid namespace"):
        await forward(client, envelope("/tasks/exit", task_pb2.TaskExit(), namespace="bad/ns"))
    await forward(client, envelope("/tasks/exit", task_pb2.TaskExit()))


async def test_unknown_service_and_method(client: Client) -> None:
    with pytest.raises(errdefs.NotImplemented) as info:
        await client.call("no.such.Service", "Forward", empty_pb2.Empty(), empty_pb2.Empty)
    assert info.value.message == "service no.such.Service"
    with pytest.raises(errdefs.NotImplemented) as info:
        await client.call(EVENTS, "Nope", empty_pb2.Empty(), empty_pb2.Empty)
    assert info.value.message == "method Nope"


async def test_containerd_refuses_an_oversize_message(containerd: Containerd) -> None:
    # Our limit above ttrpc's, so the oversize request really goes out.
    client = await Client.connect(containerd.address + ".ttrpc", max_message_size=8 << 20)
    try:
        event = task_pb2.TaskExit(container_id="x" * (5 << 20))
        with pytest.raises(errdefs.ResourceExhausted) as info:
            await forward(client, envelope("/tasks/exit", event))
        length = int(info.value.message.split()[2])
        assert length > GO_TTRPC_MAX
        assert info.value.message == (
            f"message length {length} exceed maximum message size of {GO_TTRPC_MAX}"
        )
        # containerd skipped the body: the connection still works.
        await forward(client, envelope("/tasks/exit", task_pb2.TaskExit(container_id="ok")))
    finally:
        await client.close()


def test_containerd_fixture_path_is_short(containerd: Containerd) -> None:
    assert len(str(Path(containerd.address + ".ttrpc"))) < 107
