"""In-process cluster nodes: the real metadata layer and Content API on a unix
socket (``tests.metadata.server``), the peer plugin's parts wired by
``daemon.peer.plugin.start``, over one of two cluster indexes:

- ``MemoryBackend``: SQLite per node and the in-process index
  (``tests.peer.cluster``);
- ``EtcdBackend``: the etcd metadata store per node on a real etcd, and the
  peer plugin's own index over it (``daemon.peer.etcdindex``).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry

from api.types import LEASE_HEADER
from daemon.metadata.content import NamespacedContent
from daemon.metadata.etcd.store import EtcdStore
from daemon.metadata.services import MetadataServices
from daemon.metadata.sqlite import SqliteStore
from daemon.metadata.store import MetadataStore
from daemon.peer import plugin as peer_plugin
from daemon.peer.etcdindex import EtcdClusterIndex
from daemon.peer.index import ClusterIndex
from daemon.peer.metrics import PeerMetrics
from services.content.proxy import ProxyContentStore
from services.content.store import ContentStore
from tests.metadata.server import MetaServer, meta_server
from tests.metadata.stores import etcd_settings, open_etcd
from tests.peer.certs import NodeCert
from tests.peer.cluster import MemoryCluster
from tests.peer.support import settings


class Backend(Protocol):
    name: str

    async def open_store(self, node: str, root: Path) -> MetadataStore: ...

    def index(self, node: str, services: MetadataServices) -> ClusterIndex: ...

    async def kill(self, node: str) -> None:
        """``node`` stops counting as live (its peer server may still run)."""
        ...

    async def holding(self, ns: str, digest: str) -> list[str]:
        """The nodes that recorded ``digest`` in ``ns``, live or not, by name."""
        ...


@dataclass
class MemoryBackend:
    name: str = "memory"
    cluster: MemoryCluster = field(default_factory=MemoryCluster)

    async def open_store(self, node: str, root: Path) -> MetadataStore:
        return SqliteStore(root / "meta.db")

    def index(self, node: str, services: MetadataServices) -> ClusterIndex:
        return self.cluster.join(node, services.db)

    async def kill(self, node: str) -> None:
        self.cluster.kill(node)

    async def holding(self, ns: str, digest: str) -> list[str]:
        return sorted(await self.cluster.holding(ns, digest))


@dataclass
class EtcdBackend:
    endpoints: list[str]
    name: str = "etcd"
    prefix: str = field(default_factory=lambda: f"/peer-{uuid.uuid4().hex[:10]}")
    stores: dict[str, EtcdStore] = field(default_factory=dict)

    async def open_store(self, node: str, root: Path) -> MetadataStore:
        store = await open_etcd(etcd_settings(self.endpoints, self.prefix, node), root)
        self.stores[node] = store
        return store

    def index(self, node: str, services: MetadataServices) -> ClusterIndex:
        return EtcdClusterIndex(self.stores[node])

    async def kill(self, node: str) -> None:
        # Its lease is revoked: etcd drops its live key, as when it dies.
        await self.stores[node].session.leave()

    async def holding(self, ns: str, digest: str) -> list[str]:
        any_store = next(iter(self.stores.values()))
        return sorted(h.node for h in await any_store.cluster.holders(ns, digest))


@dataclass
class Node:
    name: str
    ms: MetaServer
    plugin: peer_plugin.PeerPlugin
    metrics: PeerMetrics

    @property
    def content(self) -> NamespacedContent:
        assert self.ms.services.content is not None
        return self.ms.services.content

    def api(self, ns: str = "default", lease: str = "") -> ProxyContentStore:
        """The node's Content API as a client sees it."""
        md = ((LEASE_HEADER, lease),) if lease else ()
        return ProxyContentStore(self.ms.channel, namespace=ns, metadata=md)

    def value(self, name: str, **labels: str) -> float:
        v = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if v is None else v

    @property
    def served(self) -> float:
        return self.value("berthd_content_peer_served_bytes_total")

    @property
    def fetched(self) -> float:
        return self.value("berthd_content_peer_fetched_bytes_total")


@contextlib.asynccontextmanager
async def node(
    root: Path,
    name: str,
    backend: Backend,
    cert: NodeCert,
    content: ContentStore | None = None,
) -> AsyncIterator[Node]:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    store = await backend.open_store(name, d)
    async with meta_server(d, start_gc=False, content=content, store=store) as ms:
        namespaced = ms.services.content
        assert namespaced is not None
        metrics = PeerMetrics(CollectorRegistry())
        plugin = await peer_plugin.start(
            namespaced,
            namespaced.backend,
            settings(cert),
            backend.index(name, ms.services),
            metrics,
        )
        try:
            yield Node(name, ms, plugin, metrics)
        finally:
            await plugin.close()


@contextlib.asynccontextmanager
async def nodes(
    root: Path, backend: Backend, certs: Mapping[str, NodeCert], *names: str
) -> AsyncIterator[list[Node]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(node(root, n, backend, certs[n])) for n in names]
