"""The metadata layer assembled: stores, wrappers, collector, scheduler, servicers.

``MetadataServices`` is what the daemon's plugins hand out and what tests
build directly over real backends: give it a ``MetadataStore``, the content
backend (or None), the snapshotters by name and a publisher.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import grpc
from prometheus_client import CollectorRegistry

from api.containerd.services.containers.v1 import containers_pb2_grpc
from api.containerd.services.images.v1 import images_pb2_grpc
from api.containerd.services.leases.v1 import leases_pb2_grpc
from api.containerd.services.namespaces.v1 import namespace_pb2_grpc
from api.containerd.services.snapshots.v1 import snapshots_pb2_grpc
from daemon.events.exchange import Publisher
from daemon.metadata import metrics
from daemon.metadata.collector import Collector, GCStats
from daemon.metadata.containers import ContainerStore
from daemon.metadata.content import NamespacedContent
from daemon.metadata.db import MetadataDB
from daemon.metadata.images import ImageStore
from daemon.metadata.leases import LeaseManager
from daemon.metadata.namespaces import NamespaceStore
from daemon.metadata.scheduler import GCScheduler, SchedulerConfig
from daemon.metadata.servicers import containers, content, images, leases, namespaces, snapshots
from daemon.metadata.snapshots import NamespacedSnapshotter
from daemon.metadata.store import ClusterChanges, MetadataStore
from services.content.servicer import add_to_server as add_content_servicer
from services.content.store import ContentStore
from services.snapshotter.snapshotter import Snapshotter

Register = Callable[[grpc.aio.Server], None]


@dataclass(frozen=True)
class Service:
    name: str
    register: Register


class MetadataServices:
    def __init__(
        self,
        store: MetadataStore,
        content_backend: ContentStore | None,
        snapshotters: Mapping[str, Snapshotter],
        publisher: Publisher,
        *,
        gc: SchedulerConfig | None = None,
        shared_content: bool = True,
    ) -> None:
        self.db = MetadataDB(store)
        self.content_backend = content_backend
        self.snapshotter_backends = dict(snapshotters)
        self.publisher = publisher
        self.namespaces = NamespaceStore(self.db)
        self.images = ImageStore(self.db)
        self.containers = ContainerStore(self.db)
        self.leases = LeaseManager(self.db)
        self.content = (
            NamespacedContent(self.db, content_backend, shared=shared_content)
            if content_backend is not None
            else None
        )
        self.snapshotters = {
            name: NamespacedSnapshotter(self.db, name, sn) for name, sn in snapshotters.items()
        }
        self.collector = Collector(self.db, self.content, self.snapshotters)
        self.gc_metrics: metrics.GCMetrics | None = None
        self.scheduler = GCScheduler(self.collector.collect, gc, on_collected=self._observe)
        self.db.register_mutation_callback(self.scheduler.mutation_callback)
        if isinstance(store, ClusterChanges):
            store.on_cluster_change(self._cluster_changed)
        self.on_close: list[Callable[[], Awaitable[None]]] = []
        # Checks run before a container is deleted (the tasks plugin refuses
        # while the container has a task, where containerd's client does).
        self.container_delete_guards: list[containers.DeleteGuard] = []

    def _cluster_changed(self) -> None:
        """Another node removed references: this node's blobs and snapshots may be garbage."""
        self.db.dirty_snapshotters.update(self.snapshotters)
        self.db.mark(dirty=True, content=True)

    def _observe(self, stats: GCStats | None, elapsed: float) -> None:
        if self.gc_metrics is not None:
            self.gc_metrics.observe(stats, elapsed)

    def configure_gc(self, config: SchedulerConfig) -> None:
        """Set the collection schedule (before ``start``)."""
        self.scheduler.configure(config)

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """Add the metadata and GC families to ``registry`` (from the event loop)."""
        self.gc_metrics = metrics.register(registry, self.db.store)

    def start(self, ready: Callable[[], Awaitable[None]] | None = None) -> None:
        """Start the GC scheduler (needs the running loop); the start-up
        collection waits for ``ready`` (the backends answering) when given."""
        self.scheduler.start(ready)

    async def close(self) -> None:
        """Stop collecting, close the database, then whatever ``on_close`` lists
        (the plugin's channels)."""
        await self.scheduler.stop()
        await self.db.close()
        hooks, self.on_close = self.on_close, []
        for fn in hooks:
            await fn()

    def servicers(self) -> list[Service]:
        """Every servicer of the layer, ready to add to a server."""
        pub, gc = self.publisher, self.scheduler
        ns = namespaces.NamespacesServicer(self.namespaces, pub)
        im = images.ImagesServicer(self.images, pub, gc)
        co = containers.ContainersServicer(self.containers, pub, self.container_delete_guards)
        le = leases.LeasesServicer(self.leases, gc)
        sn = snapshots.SnapshotsServicer(self.snapshotters, pub)
        out = [
            Service(
                namespaces.SERVICE_NAME,
                lambda s: namespace_pb2_grpc.add_NamespacesServicer_to_server(ns, s),
            ),
            Service(
                images.SERVICE_NAME, lambda s: images_pb2_grpc.add_ImagesServicer_to_server(im, s)
            ),
            Service(
                containers.SERVICE_NAME,
                lambda s: containers_pb2_grpc.add_ContainersServicer_to_server(co, s),
            ),
            Service(
                leases.SERVICE_NAME, lambda s: leases_pb2_grpc.add_LeasesServicer_to_server(le, s)
            ),
            Service(
                snapshots.SERVICE_NAME,
                lambda s: snapshots_pb2_grpc.add_SnapshotsServicer_to_server(sn, s),
            ),
        ]
        if self.content is not None:
            ct = content.ContentServicer(self.content, pub)
            out.append(
                Service(
                    content.SERVICE_NAME,
                    lambda s: add_content_servicer(ct, s),
                )
            )
        return out
