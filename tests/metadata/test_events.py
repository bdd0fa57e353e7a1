"""Events over gRPC: every service publishes containerd's topics; Publish,
Forward and Subscribe with filters."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from google.protobuf import any_pb2, timestamp_pb2

from api import errdefs
from api.containerd.events import task_pb2
from api.containerd.services.containers.v1 import containers_pb2
from api.containerd.services.events.v1 import events_pb2
from api.containerd.services.images.v1 import images_pb2
from api.containerd.services.namespaces.v1 import namespace_pb2
from api.containerd.types import descriptor_pb2, event_pb2
from api.typeurl import OCI_SPEC_URL, TypeRegistry
from services.content.proxy import ProxyContentStore
from services.snapshotter.proxy import ProxySnapshotter
from tests.metadata.server import MetaServer, md, raises


async def collect(
    ms: MetaServer, *filters: str
) -> tuple[asyncio.Task[None], list[event_pb2.Envelope]]:
    got: list[event_pb2.Envelope] = []
    call = ms.stubs.events.Subscribe(events_pb2.SubscribeRequest(filters=list(filters)))

    async def run() -> None:
        async for env in call:
            got.append(env)

    task = asyncio.create_task(run())
    # The subscription exists once the exchange counts it.
    for _ in range(200):
        if ms.exchange.subscribers:
            break
        await asyncio.sleep(0.01)
    return task, got


async def wait_for(got: list[event_pb2.Envelope], n: int) -> None:
    for _ in range(500):
        if len(got) >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"only {len(got)} events: {[e.topic for e in got]}")


async def test_every_service_publishes_its_topics(ms: MetaServer) -> None:
    task, got = await collect(ms)
    s = ms.stubs
    await s.namespaces.Create(
        namespace_pb2.CreateNamespaceRequest(namespace=namespace_pb2.Namespace(name="ev"))
    )
    await s.namespaces.Update(
        namespace_pb2.UpdateNamespaceRequest(
            namespace=namespace_pb2.Namespace(name="ev", labels={"a": "b"})
        )
    )
    data = b"hello"
    dgst = "sha256:" + hashlib.sha256(data).hexdigest()
    img = images_pb2.Image(
        name="i",
        target=descriptor_pb2.Descriptor(media_type="application/json", digest=dgst, size=5),
    )
    await s.images.Create(images_pb2.CreateImageRequest(image=img), metadata=md("ev"))
    await s.images.Update(images_pb2.UpdateImageRequest(image=img), metadata=md("ev"))
    await s.images.Delete(images_pb2.DeleteImageRequest(name="i"), metadata=md("ev"))
    c = containers_pb2.Container(
        id="c",
        runtime=containers_pb2.Container.Runtime(name="io.containerd.runc.v2"),
        spec=any_pb2.Any(type_url=OCI_SPEC_URL, value=b"{}"),
    )
    await s.containers.Create(containers_pb2.CreateContainerRequest(container=c), metadata=md("ev"))
    await s.containers.Update(containers_pb2.UpdateContainerRequest(container=c), metadata=md("ev"))
    await s.containers.Delete(containers_pb2.DeleteContainerRequest(id="c"), metadata=md("ev"))
    store = ProxyContentStore(ms.channel, namespace="ev")
    w = await store.writer("r", 5)
    await w.write(data)
    await w.commit(5, dgst)
    await store.delete(dgst)
    sn = ProxySnapshotter(ms.channel, "native", namespace="ev")
    await sn.prepare("k", "")
    await sn.commit("n", "k")
    await sn.remove("n")
    await s.namespaces.Delete(namespace_pb2.DeleteNamespaceRequest(name="ev"))
    await wait_for(got, 13)
    task.cancel()
    assert [e.topic for e in got] == [
        "/namespaces/create",
        "/namespaces/update",
        "/images/create",
        "/images/update",
        "/images/delete",
        "/containers/create",
        "/containers/update",
        "/containers/delete",
        "/content/delete",
        "/snapshot/prepare",
        "/snapshot/commit",
        "/snapshot/remove",
        "/namespaces/delete",
    ]
    assert all(e.namespace == "ev" for e in got[2:])
    types = TypeRegistry()
    commit = types.unpack(got[10].event)
    assert (commit.key, commit.name, commit.snapshotter) == ("k", "n", "native")  # type: ignore[union-attr]


async def test_subscribe_filters_publish_and_forward(ms: MetaServer) -> None:
    task, got = await collect(ms, 'topic=="/tasks/exit"', "namespace==other")
    types = TypeRegistry()
    exit_event = task_pb2.TaskExit(container_id="c", exit_status=7)
    await ms.stubs.events.Publish(
        events_pb2.PublishRequest(topic="/tasks/exit", event=types.pack(exit_event)),
        metadata=md("n"),
    )
    await ms.stubs.events.Publish(
        events_pb2.PublishRequest(topic="/tasks/start", event=types.pack(task_pb2.TaskStart())),
        metadata=md("n"),
    )
    env = event_pb2.Envelope(
        namespace="other",
        topic="/tasks/oom",
        event=types.pack(task_pb2.TaskOOM(container_id="c")),
        timestamp=timestamp_pb2.Timestamp(seconds=1_700_000_000),
    )
    await ms.stubs.events.Forward(events_pb2.ForwardRequest(envelope=env))
    await wait_for(got, 2)
    task.cancel()
    assert [(e.namespace, e.topic) for e in got] == [("n", "/tasks/exit"), ("other", "/tasks/oom")]
    assert types.unpack(got[0].event) == exit_event
    assert got[1] == env


async def test_rpc_errors(ms: MetaServer) -> None:
    with raises(errdefs.FailedPrecondition, match="namespace is required"):
        await ms.stubs.events.Publish(events_pb2.PublishRequest(topic="/x"))
    with raises(errdefs.InvalidArgument, match="timestamp must be set"):
        await ms.stubs.events.Forward(
            events_pb2.ForwardRequest(envelope=event_pb2.Envelope(namespace="n", topic="/x"))
        )
    with raises(errdefs.InvalidArgument):
        async for _ in ms.stubs.events.Subscribe(events_pb2.SubscribeRequest(filters=["topic=="])):
            pass


@pytest.mark.parametrize("n", [3])
async def test_a_subscriber_that_goes_away_is_dropped(ms: MetaServer, n: int) -> None:
    for _ in range(n):
        task, _got = await collect(ms)
        task.cancel()
        for _ in range(200):
            if ms.exchange.subscribers == 0:
                break
            await asyncio.sleep(0.01)
        assert ms.exchange.subscribers == 0
