"""An in-process cluster content index over the nodes' own metadata databases.

It follows the etcd backend's model without etcd: a node holds a blob in a
namespace when its metadata has the record (etcd's per-node ``blobs`` key),
the cluster's record is that record, a node is live until the test kills
it, and its peer address is what it published.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from api import errdefs
from daemon.metadata import records
from daemon.metadata.db import MetadataDB
from daemon.metadata.remote import LabelChange
from daemon.metadata.store import BLOBS, Tx
from daemon.peer.index import Holder
from services.content.store import Info


def _info(b: records.Blob) -> Info:
    def dt(ns: int) -> datetime:
        return datetime.fromtimestamp(ns / 1e9, UTC)

    return Info(b.digest, b.size, dt(b.created_at), dt(b.updated_at), b.labels)


@dataclass
class Member:
    db: MetadataDB
    address: str = ""
    alive: bool = True


@dataclass
class MemoryCluster:
    members: dict[str, Member] = field(default_factory=dict)
    added: list[tuple[str, str, str]] = field(default_factory=list)  # add_holder calls

    def join(self, node: str, db: MetadataDB) -> MemoryIndex:
        self.members[node] = Member(db)
        return MemoryIndex(self, node)

    def kill(self, node: str) -> None:
        """The node's liveness key is gone (its etcd lease expired)."""
        self.members[node].alive = False

    async def holding(self, ns: str, digest: str) -> list[str]:
        """Every node (live or not) whose metadata records ``digest`` in ``ns``."""
        out = []
        for name, m in self.members.items():
            if await m.db.view(lambda tx: tx.get(BLOBS, ns, digest)) is not None:
                out.append(name)
        return out


class MemoryIndex:
    """``ClusterIndex`` for node ``node`` of ``cluster``."""

    def __init__(self, cluster: MemoryCluster, node: str) -> None:
        self.cluster = cluster
        self._node = node

    @property
    def node(self) -> str:
        return self._node

    def _others(self) -> list[tuple[str, Member]]:
        return [(n, m) for n, m in self.cluster.members.items() if n != self._node and m.alive]

    async def lookup(self, ns: str, digest: str) -> Info | None:
        for _, m in self._others():
            blob = await m.db.view(lambda tx: tx.get(BLOBS, ns, digest))
            if blob is not None:
                return _info(blob)
        return None

    async def update(self, ns: str, digest: str, change: LabelChange) -> Info | None:
        found: Info | None = None
        for m in self.cluster.members.values():

            def txn(tx: Tx) -> records.Blob | None:
                blob = tx.get(BLOBS, ns, digest)
                if blob is None:
                    return None
                new = dataclasses.replace(
                    blob, labels=dict(change(blob.labels)), updated_at=records.now_ns()
                )
                tx.put(BLOBS, new)
                return new

            updated = await m.db.update(txn)
            if updated is not None:
                found = _info(updated)
        return found

    async def holders(self, ns: str, digest: str) -> Sequence[Holder]:
        out = []
        for name, m in self._others():
            if not m.address:
                continue
            if await m.db.view(lambda tx: tx.get(BLOBS, ns, digest)) is not None:
                out.append(Holder(name, m.address))
        return out

    async def add_holder(self, ns: str, digest: str) -> None:
        db = self.cluster.members[self._node].db
        if await db.view(lambda tx: tx.get(BLOBS, ns, digest)) is None:
            raise errdefs.FailedPrecondition(f"{self._node} records no {digest} in {ns}")
        self.cluster.added.append((self._node, ns, digest))

    async def publish(self, address: str) -> None:
        self.cluster.members[self._node].address = address
