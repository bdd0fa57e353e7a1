"""The peer plugin, ``io.berthd.content.v1 peer``.

Configured by ``[plugins."io.berthd.content.v1.peer"]`` (``settings``); with
no ``peer_address`` it is skipped.  At init it serves the node's content
backend read-only on its TCP port (``server``) and, when the metadata
backend keeps a cluster content index (etcd), publishes the advertised
address with the node's liveness key and gives the namespaced content store
its ``RemoteContent`` (``remote``): blobs other nodes hold become visible
here and are fetched on first read.  On a single-node backend (SQLite) it
only serves.  Closed at shutdown before the metadata store: no new fetch
starts, transfers under way are cancelled and their ingests aborted, the
port closes.

The server, client and etcd modules are imported when the plugin starts:
most daemons run without it, and they would carry some 2 MB of modules
(the etcd client and its protos among them) for nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from daemon import registry
from daemon.capabilities import Closeable
from daemon.metadata.services import MetadataServices
from daemon.metrics import DaemonMetrics
from daemon.peer.metrics import PeerMetrics
from daemon.peer.settings import PeerConfig, PeerSettings, resolve
from daemon.registry import InitContext, Registration, SkipPlugin

if TYPE_CHECKING:
    from daemon.metadata.content import NamespacedContent
    from daemon.peer.client import PeerClients
    from daemon.peer.fetch import PeerFetcher
    from daemon.peer.index import ClusterIndex
    from daemon.peer.server import PeerServer
    from services.content.store import ContentStore

log = logging.getLogger(__name__)

PEER = "io.berthd.content.v1"
PEER_ID = "peer"


def cluster_index(md: MetadataServices) -> ClusterIndex | None:
    """The metadata store's cluster content index, when it keeps one (etcd)."""
    from daemon.metadata.etcd.store import EtcdStore
    from daemon.peer.etcdindex import EtcdClusterIndex

    store = md.db.store
    if isinstance(store, EtcdStore):
        return EtcdClusterIndex(store)
    return None


class PeerPlugin:
    """The plugin's instance: the server, and the fetch path when on a cluster."""

    def __init__(
        self,
        server: PeerServer,
        content: NamespacedContent,
        clients: PeerClients | None,
        fetcher: PeerFetcher | None,
        index: ClusterIndex | None = None,
    ) -> None:
        self.server = server
        self.content = content
        self.clients = clients
        self.fetcher = fetcher
        self.index = index

    async def close(self) -> None:
        self.content.remote = None
        self.content.on_client_write = None
        if isinstance(self.index, Closeable):
            await self.index.close()
        if self.fetcher is not None:
            await self.fetcher.close()
        await self.server.stop()
        if self.clients is not None:
            await self.clients.close()


async def start(
    content: NamespacedContent,
    backend: ContentStore,
    settings: PeerSettings,
    index: ClusterIndex | None,
    metrics: PeerMetrics | None = None,
) -> PeerPlugin:
    """Serve ``backend`` to peers and, with a cluster ``index``, publish the
    address and let ``content`` fetch what other nodes hold."""
    from daemon.peer.client import PeerClients
    from daemon.peer.fetch import PeerFetcher
    from daemon.peer.remote import PeerContent
    from daemon.peer.server import PeerServer

    server = PeerServer(backend, settings, metrics.served.inc if metrics is not None else None)
    address = await server.start()
    if metrics is not None:
        content.on_client_write = metrics.client_written.inc
    if index is None:
        log.warning(
            "peer content on %s: the metadata backend keeps no cluster index;"
            " serving this node's content only",
            address,
        )
        return PeerPlugin(server, content, None, None)
    clients = PeerClients(settings.tls)
    fetcher = PeerFetcher(backend, clients.store, metrics)
    try:
        await index.publish(address)
    except BaseException:
        await server.stop(0)
        await clients.close()
        raise
    content.remote = PeerContent(index, fetcher)
    return PeerPlugin(server, content, clients, fetcher, index)


async def _init(ic: InitContext) -> PeerPlugin:
    cfg: PeerConfig = ic.config
    if not cfg.peer_address:
        raise SkipPlugin("no peer_address configured")
    settings = resolve(cfg)
    md = ic.plugins.get(registry.METADATA)
    assert isinstance(md, MetadataServices)
    if md.content is None or md.content_backend is None:
        raise SkipPlugin("no content store loaded")
    daemon_metrics = ic.optional(DaemonMetrics)
    metrics = PeerMetrics(daemon_metrics.registry) if daemon_metrics is not None else None
    index = cluster_index(md)
    plugin = await start(md.content, md.content_backend, settings, index, metrics)
    ic.meta.exports["address"] = plugin.server.address
    ic.meta.exports["tls"] = "mutual" if settings.tls is not None else "none (loopback)"
    if index is not None:
        ic.meta.exports["node"] = index.node
    return plugin


REGISTRATIONS = (
    Registration(PEER, PEER_ID, _init, (registry.METADATA, registry.CONTENT), PeerConfig),
)
