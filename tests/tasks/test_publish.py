"""``publish_from_stdin`` against the real containerd's Events service."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import any_pb2

from api import errdefs
from api.containerd.events import task_pb2 as events
from api.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from services.tasks.publish import publish_from_stdin
from tests.support import short_tmpdir
from tests.support.containerd import Containerd, need_containerd


def _payload() -> bytes:
    event = events.TaskExit(container_id="c1", id="c1", pid=42, exit_status=3)
    packed = any_pb2.Any(type_url="containerd.events.TaskExit", value=event.SerializeToString())
    return packed.SerializeToString()


async def test_bad_input_is_rejected_before_dialing() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="topic required"):
        await publish_from_stdin("/nonexistent.sock", "", "ns1", _payload())
    with pytest.raises(errdefs.InvalidArgument, match="namespace"):
        await publish_from_stdin("/nonexistent.sock", "/tasks/exit", "bad/ns", _payload())
    with pytest.raises(errdefs.InvalidArgument, match="not a protobuf Any"):
        await publish_from_stdin("/nonexistent.sock", "/tasks/exit", "ns1", b"\xff\xff\xff")


async def test_nobody_listening_is_unavailable() -> None:
    with short_tmpdir("bpub") as d, pytest.raises(errdefs.Unavailable, match="failed to dial"):
        await publish_from_stdin(str(d / "nobody.sock"), "/tasks/exit", "ns1", _payload())


@pytest.fixture(scope="module")
def containerd() -> Iterator[Containerd]:
    need_containerd()
    with short_tmpdir("bpcd") as d, Containerd(d / "cd") as cd:
        yield cd


@pytest.mark.root
@pytest.mark.containerd
async def test_event_reaches_containerd_subscribers(containerd: Containerd) -> None:
    async with grpc.aio.insecure_channel("unix://" + containerd.address) as channel:
        stub = events_pb2_grpc.EventsStub(channel)
        stream = stub.Subscribe(events_pb2.SubscribeRequest(filters=['topic=="/tasks/exit"']))
        # Subscribe has no "ready" answer: publish until the subscriber sees one.
        first = asyncio.ensure_future(stream.read())
        for _ in range(150):
            await publish_from_stdin(containerd.address, "/tasks/exit", "pubns", _payload())
            await asyncio.wait([first], timeout=0.2)
            if first.done():
                break
        else:
            first.cancel()
            pytest.fail("containerd never delivered the published event")
        envelope = first.result()
        stream.cancel()
    assert envelope.topic == "/tasks/exit"
    assert envelope.namespace == "pubns"
    assert envelope.event.type_url == "containerd.events.TaskExit"
    got = events.TaskExit.FromString(envelope.event.value)
    assert (got.container_id, got.pid, got.exit_status) == ("c1", 42, 3)


@pytest.mark.root
@pytest.mark.containerd
async def test_containerd_refusal_keeps_its_class(containerd: Containerd) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        await publish_from_stdin(containerd.address, "no-leading-slash", "pubns", _payload())
