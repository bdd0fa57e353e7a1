"""Metadata stores for the backend-neutral tests: SQLite, or etcd on a real cluster.

``StoreMaker.open()`` opens the store of one test; opening it again (after
closing) reaches the same data: the same database file, or the same etcd
prefix.  Each etcd test gets a prefix of its own on the session's etcd, so
tests never see each other's keys.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from daemon.metadata.etcd.settings import EtcdSettings, resolve
from daemon.metadata.etcd.store import EtcdStore
from daemon.metadata.sqlite import SqliteStore
from daemon.metadata.store import MetadataStore

BACKENDS = ("sqlite", "etcd")


def etcd_settings(
    endpoints: list[str],
    prefix: str,
    node: str = "n1",
    *,
    request_timeout: str = "5s",
    lease_ttl: str = "4s",
    max_txn_ops: int = 128,
) -> EtcdSettings:
    return resolve(
        endpoints=endpoints,
        ca="",
        cert="",
        key="",
        prefix=prefix,
        node=node,
        dial_timeout="3s",
        request_timeout=request_timeout,
        lease_ttl=lease_ttl,
        max_txn_ops=max_txn_ops,
    )


async def open_etcd(settings: EtcdSettings, root: Path | str = "") -> EtcdStore:
    store = EtcdStore(settings, root=str(root))
    await store.start(wait=settings.dial_timeout)
    return store


@dataclass
class StoreMaker:
    backend: str
    root: Path
    endpoints: list[str] = field(default_factory=list)
    prefix: str = field(default_factory=lambda: f"/t-{uuid.uuid4().hex[:10]}")

    async def open(self, node: str = "n1", **etcd: object) -> MetadataStore:
        """The test's store (as ``node`` on etcd)."""
        if self.backend == "sqlite":
            return SqliteStore(self.root / "meta.db")
        settings = etcd_settings(self.endpoints, self.prefix, node, **etcd)  # type: ignore[arg-type]
        return await open_etcd(settings, self.root / node)
