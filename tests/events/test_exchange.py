"""The event exchange: publish, forward, subscribe with filters, slow subscribers."""

from __future__ import annotations

import asyncio
import threading

import pytest
from google.protobuf import timestamp_pb2

from api import errdefs, filters
from api.containerd.events import container_pb2, image_pb2, task_pb2
from api.containerd.types import event_pb2
from api.typeurl import TypeRegistry
from daemon.events.exchange import Exchange


async def next_env(sub: object) -> event_pb2.Envelope:
    return await asyncio.wait_for(anext(sub), 5)  # type: ignore[call-overload]


async def test_publish_reaches_every_subscriber_in_order() -> None:
    ex = Exchange()
    a, b = ex.subscribe(), ex.subscribe()
    await ex.publish("n", image_pb2.ImageCreate(name="x"))
    await ex.publish("n", image_pb2.ImageDelete(name="x"))
    for sub in (a, b):
        first, second = await next_env(sub), await next_env(sub)
        assert (first.topic, second.topic) == ("/images/create", "/images/delete")
        assert first.namespace == "n" and first.timestamp.seconds > 0
        decoded = TypeRegistry().unpack(first.event)
        assert decoded == image_pb2.ImageCreate(name="x")
        assert first.event.type_url == "containerd.services.images.v1.ImageCreate"


async def test_filters_on_topic_namespace_and_event_fields() -> None:
    ex = Exchange()
    by_topic = ex.subscribe('topic~="/containers/*"')
    by_ns = ex.subscribe("namespace==b")
    by_field = ex.subscribe("event.id==c2", "event.runtime.name==special")
    await ex.publish("a", container_pb2.ContainerCreate(id="c1"))
    await ex.publish("b", image_pb2.ImageCreate(name="i"))
    await ex.publish("a", container_pb2.ContainerDelete(id="c2"))
    await ex.publish(
        "a",
        container_pb2.ContainerCreate(
            id="c3", runtime=container_pb2.ContainerCreate.Runtime(name="special")
        ),
    )
    assert [(await next_env(by_topic)).topic for _ in range(3)] == [
        "/containers/create",
        "/containers/delete",
        "/containers/create",
    ]
    assert by_topic.pending == 0
    assert (await next_env(by_ns)).topic == "/images/create" and by_ns.pending == 0
    ids = []
    for _ in range(2):
        env = await next_env(by_field)
        ids.append(TypeRegistry().unpack(env.event).id)  # type: ignore[union-attr]
    assert ids == ["c2", "c3"] and by_field.pending == 0


async def test_bad_filters_and_topics_are_refused() -> None:
    ex = Exchange()
    with pytest.raises(errdefs.InvalidArgument):
        ex.subscribe("topic==")
    with pytest.raises(errdefs.InvalidArgument, match="must start with '/'"):
        await ex.publish("n", image_pb2.ImageCreate(), topic="images")
    with pytest.raises(errdefs.InvalidArgument, match="failed validation on component"):
        await ex.publish("n", image_pb2.ImageCreate(), topic="/images/bad topic")
    with pytest.raises(errdefs.InvalidArgument, match="failed publishing event"):
        await ex.publish("bad ns", image_pb2.ImageCreate())


async def test_forward_validates_the_envelope() -> None:
    ex = Exchange()
    sub = ex.subscribe()
    env = event_pb2.Envelope(
        namespace="n",
        topic="/tasks/exit",
        event=TypeRegistry().pack(task_pb2.TaskExit(container_id="c", exit_status=3)),
    )
    with pytest.raises(errdefs.InvalidArgument, match="timestamp must be set"):
        await ex.forward(env)
    env.timestamp.CopyFrom(timestamp_pb2.Timestamp(seconds=1700000000))
    await ex.forward(env)
    assert await next_env(sub) == env
    with pytest.raises(errdefs.InvalidArgument, match="invalid namespace"):
        await ex.forward(event_pb2.Envelope(topic="/x", timestamp=env.timestamp))


async def test_a_slow_subscriber_never_blocks_publishers() -> None:
    ex = Exchange(queue_size=10)
    slow = ex.subscribe()
    fast = ex.subscribe()
    received = []

    async def drain() -> None:
        async for env in fast:
            received.append(env)
            if len(received) == 100:
                return

    reader = asyncio.create_task(drain())
    for i in range(100):
        await ex.publish("n", image_pb2.ImageCreate(name=str(i)))
        await asyncio.sleep(0)
    await asyncio.wait_for(reader, 5)
    assert len(received) == 100
    # The slow one got what fitted, then learns it was cut off.
    got = [await next_env(slow) for _ in range(10)]
    assert [TypeRegistry().unpack(e.event).name for e in got] == [str(i) for i in range(10)]  # type: ignore[union-attr]
    with pytest.raises(errdefs.ResourceExhausted, match="fell behind"):
        await next_env(slow)
    assert ex.subscribers == 1 and ex.disconnected == 1


async def test_close_ends_iteration() -> None:
    ex = Exchange()
    sub = ex.subscribe()

    async def consume() -> list[event_pb2.Envelope]:
        return [e async for e in sub]

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    sub.close()
    assert await asyncio.wait_for(task, 5) == []
    assert ex.subscribers == 0


async def test_regexp_filters_are_matched_by_the_reader_off_the_loop() -> None:
    # A publisher serves every namespace, so it must not run a subscriber's
    # regexp (one match can take tens of milliseconds): such a subscription
    # queues everything and its reader matches in a worker thread.
    ex = Exchange()
    sub = ex.subscribe('topic~="^/containers/(a+)+$"', "topic~=delete")
    plain = ex.subscribe("namespace==b")
    assert sub._filter is not None
    real = sub._filter
    threads: list[int] = []

    class Tracking:
        def match(self, adaptor: filters.Adaptor) -> bool:
            threads.append(threading.get_ident())
            return real.match(adaptor)

    sub._filter = Tracking()
    await ex.publish("a", container_pb2.ContainerCreate(id="c1"))
    await ex.publish("b", image_pb2.ImageCreate(name="i"))
    await ex.publish("a", container_pb2.ContainerDelete(id="c2"))
    assert threads == [] and sub.pending == 3 and plain.pending == 1
    assert (await next_env(sub)).topic == "/containers/delete"
    assert len(threads) == 3 and threading.get_ident() not in threads
    assert sub.pending == 0
