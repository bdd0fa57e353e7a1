"""A metadata server for tests: the real metadata layer over real backends, served
by the real harness server on a unix socket in a temp dir.

Backends are in-process: the local content store and the native snapshotter
(named ``native``), each under the test's directory.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from api import errdefs, errgrpc, namespaces
from api.containerd.services.containers.v1 import containers_pb2_grpc
from api.containerd.services.content.v1 import content_pb2_grpc
from api.containerd.services.events.v1 import events_pb2_grpc
from api.containerd.services.images.v1 import images_pb2_grpc
from api.containerd.services.leases.v1 import leases_pb2_grpc
from api.containerd.services.namespaces.v1 import namespace_pb2_grpc
from api.containerd.services.snapshots.v1 import snapshots_pb2_grpc
from daemon.events.exchange import Exchange
from daemon.events.service import SERVICE_NAME as EVENTS_SERVICE
from daemon.events.service import EventsServicer
from daemon.metadata.scheduler import SchedulerConfig
from daemon.metadata.services import MetadataServices
from daemon.metadata.sqlite import SqliteStore
from daemon.metadata.store import MetadataStore
from services.content.local import LocalContentStore
from services.content.store import ContentStore
from services.harness.server import CHANNEL_OPTIONS, PluginServer, ServerConfig
from services.snapshotter.native import NativeSnapshotter
from services.snapshotter.snapshotter import Snapshotter

# No collection at start-up; otherwise containerd's defaults (collect right
# after every deletion).
TEST_GC = SchedulerConfig(startup_delay=0)


@dataclass
class Stubs:
    namespaces: namespace_pb2_grpc.NamespacesStub
    images: images_pb2_grpc.ImagesStub
    containers: containers_pb2_grpc.ContainersStub
    leases: leases_pb2_grpc.LeasesStub
    content: content_pb2_grpc.ContentStub
    snapshots: snapshots_pb2_grpc.SnapshotsStub
    events: events_pb2_grpc.EventsStub


@dataclass
class MetaServer:
    root: Path
    address: str
    services: MetadataServices
    exchange: Exchange
    content_backend: LocalContentStore
    snapshot_backend: NativeSnapshotter
    server: PluginServer
    channel: grpc.aio.Channel
    stubs: Stubs = field(init=False)

    def __post_init__(self) -> None:
        ch = self.channel
        self.stubs = Stubs(
            namespace_pb2_grpc.NamespacesStub(ch),
            images_pb2_grpc.ImagesStub(ch),
            containers_pb2_grpc.ContainersStub(ch),
            leases_pb2_grpc.LeasesStub(ch),
            content_pb2_grpc.ContentStub(ch),
            snapshots_pb2_grpc.SnapshotsStub(ch),
            events_pb2_grpc.EventsStub(ch),
        )


def md(ns: str, lease: str = "") -> tuple[tuple[str, str], ...]:
    out = namespaces.outgoing(ns)
    return (*out, ("containerd-lease", lease)) if lease else out


@contextlib.asynccontextmanager
async def meta_server(
    root: Path,
    gc: SchedulerConfig = TEST_GC,
    *,
    start_gc: bool = True,
    wrap: Callable[[Snapshotter], Snapshotter] | None = None,
    shared_content: bool = True,
    content: ContentStore | None = None,
    store: MetadataStore | None = None,
) -> AsyncIterator[MetaServer]:
    """``wrap`` puts something (e.g. a remote-layer provider) in front of the native
    backend; ``content`` replaces the local content store under ``root``;
    ``shared_content`` is the content sharing policy ("shared" or "isolated");
    ``store`` is the metadata store (SQLite under ``root`` by default), closed
    with the server."""
    local = LocalContentStore(root / "content")
    snap = NativeSnapshotter(root / "native")
    exchange = Exchange()
    if store is None:
        store = SqliteStore(root / "meta" / "meta.db")
    backend: Snapshotter = wrap(snap) if wrap else snap
    services = MetadataServices(
        store,
        content or local,
        {"native": backend},
        exchange,
        gc=gc,
        shared_content=shared_content,
    )
    address = str(root / "m.sock")
    server = PluginServer("metadata-test", ServerConfig(address=address, grace=1))
    services.register_metrics(server.registry)
    for svc in services.servicers():
        server.add_service(svc.name, svc.register)
    events = EventsServicer(exchange)
    server.add_service(EVENTS_SERVICE, events.register)
    await server.start()
    if start_gc:
        services.start()
    try:
        async with grpc.aio.insecure_channel(f"unix://{address}", options=CHANNEL_OPTIONS) as ch:
            yield MetaServer(root, address, services, exchange, local, snap, server, ch)
    finally:
        # Let calls in flight finish: the backends are closed next.
        await server.stop(5)
        await services.close()
        await snap.close()


@contextlib.contextmanager
def raises(cls: type[errdefs.ErrdefsError], match: str | None = None) -> Iterator[Any]:
    """pytest.raises for the typed error a gRPC call's status maps to."""
    with pytest.raises(cls, match=match) as info, errgrpc.translate():
        yield info
