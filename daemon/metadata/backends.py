"""The metadata plugin's store, chosen by config: SQLite (embedded default) or etcd.

``[plugins."io.containerd.metadata.v1.berthd"] backend`` picks it; with
``"etcd"`` the section's etcd keys (``daemon.metadata.etcd.settings``) are
checked when the config is read, so a bad value stops the daemon with a
message naming the key.  Only the etcd store reports liveness: the plugin's
exports follow it (``state``, ``nodes``), and so does the health of the
services it backs.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from daemon.metadata.etcd.settings import EtcdSettings, resolve
from daemon.metadata.sqlite import SqliteStore
from daemon.metadata.store import MetadataStore
from daemon.tomlcodec import FieldError

if TYPE_CHECKING:
    from daemon.metadata.plugin import MetadataConfig

log = logging.getLogger(__name__)

BACKENDS = ("sqlite", "etcd")
DB_FILE = "meta.db"


def etcd_settings(cfg: MetadataConfig) -> EtcdSettings:
    """The checked etcd settings of ``cfg``; FieldError naming a bad key."""
    return resolve(
        endpoints=cfg.endpoints,
        ca=cfg.ca,
        cert=cfg.cert,
        key=cfg.key,
        prefix=cfg.prefix,
        node=cfg.node,
        dial_timeout=cfg.dial_timeout,
        request_timeout=cfg.request_timeout,
        lease_ttl=cfg.lease_ttl,
        max_txn_ops=cfg.max_txn_ops,
    )


def check(cfg: MetadataConfig) -> None:
    """Refuse what cannot work (FieldError), before anything starts."""
    if cfg.backend not in BACKENDS:
        raise FieldError("backend", f"{cfg.backend!r} is not a metadata backend ({BACKENDS})")
    if cfg.backend == "etcd":
        etcd_settings(cfg)


async def open_store(cfg: MetadataConfig, root: str, exports: dict[str, str]) -> MetadataStore:
    """The configured store, started; ``exports`` gets what introspection shows."""
    exports["backend"] = cfg.backend
    if cfg.backend == "sqlite":
        path = os.path.join(root, DB_FILE)
        exports["path"] = path
        return SqliteStore(path, synchronous=cfg.synchronous)
    from daemon.metadata.etcd.store import EtcdStore

    settings = etcd_settings(cfg)
    store = EtcdStore(settings, root=root)
    exports.update(
        {
            "node": settings.node,
            "endpoints": ",".join(str(e) for e in settings.endpoints),
            "prefix": settings.prefix,
            "state": store.state,
            "nodes": "",
        }
    )

    def state(_: bool) -> None:
        exports["state"] = store.state

    def nodes(names: list[str]) -> None:
        exports["nodes"] = ",".join(names)

    store.on_change(state)
    store.watch.on_nodes.append(nodes)
    try:
        await store.start(wait=settings.dial_timeout)
    except BaseException:
        await store.close()
        raise
    exports["state"] = store.state
    return store
