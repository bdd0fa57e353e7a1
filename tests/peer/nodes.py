"""In-process cluster nodes: the real metadata layer and Content API on a unix
socket (``tests.metadata.server``), the peer plugin's parts wired by
``daemon.peer.plugin.start``, and the in-process cluster index."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from api.types import LEASE_HEADER
from daemon.metadata.content import NamespacedContent
from daemon.peer import plugin as peer_plugin
from daemon.peer.metrics import PeerMetrics
from services.content.proxy import ProxyContentStore
from services.content.store import ContentStore
from tests.metadata.server import MetaServer, meta_server
from tests.peer.certs import NodeCert
from tests.peer.cluster import MemoryCluster
from tests.peer.support import settings


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
    cluster: MemoryCluster,
    cert: NodeCert,
    backend: ContentStore | None = None,
) -> AsyncIterator[Node]:
    async with meta_server(root / name, start_gc=False, content=backend) as ms:
        content = ms.services.content
        assert content is not None
        index = cluster.join(name, ms.services.db)
        metrics = PeerMetrics(CollectorRegistry())
        plugin = await peer_plugin.start(content, content.backend, settings(cert), index, metrics)
        try:
            yield Node(name, ms, plugin, metrics)
        finally:
            await plugin.close()


@contextlib.asynccontextmanager
async def nodes(
    root: Path, cluster: MemoryCluster, certs: Mapping[str, NodeCert], *names: str
) -> AsyncIterator[list[Node]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(node(root, n, cluster, certs[n])) for n in names]
