"""Leases: named holds on content, ingests and snapshots that keep the collector
away from them (containerd's metadata/leases.go and services/leases)."""

from __future__ import annotations

import base64
import builtins
import os
import time
from collections.abc import Iterable, Mapping, Sequence

from api import errdefs, filters
from api.types import LEASE_HEADER
from daemon.metadata import records
from daemon.metadata.db import MetadataDB, ensure_namespace
from daemon.metadata.store import LEASE_RESOURCES, LEASES, Tx
from daemon.metadata.validation import q
from services.content.validation import split_digest

CONTENT = "content"
INGESTS = "ingests"
SNAPSHOTS = "snapshots"

# The gRPC header that names the lease a request's new objects belong to.


def lease_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The lease named in request metadata ("" when none)."""
    for key, value in metadata or ():
        if key.lower() == LEASE_HEADER:
            return value.decode() if isinstance(value, bytes) else value
    return ""


def random_id() -> str:
    """A fresh lease id shaped like containerd's ``leases.WithRandomID``."""
    return f"{time.time_ns() % 1_000_000_000}-{base64.urlsafe_b64encode(os.urandom(3)).decode()}"


def parse_resource(rtype: str, rid: str) -> tuple[str, str]:
    """``(type, id)`` in stored form; errors as containerd's parseLeaseResource."""
    parts = rtype.split("/")
    if parts[0] in (CONTENT, INGESTS):
        if len(parts) != 1:
            raise errdefs.InvalidArgument(f"invalid resource type {rtype}")
        if parts[0] == CONTENT:
            try:
                split_digest(rid)
            except errdefs.InvalidArgument as e:
                raise errdefs.InvalidArgument(
                    f"invalid content resource id {rid}: {e.message}"
                ) from None
        return rtype, rid
    if parts[0] == SNAPSHOTS:
        if len(parts) != 2:
            raise errdefs.InvalidArgument(f"invalid snapshot resource type {rtype}")
        return rtype, rid
    raise errdefs.NotImplemented(f"resource type {rtype} not supported yet")


def add_to_lease(tx: Tx, ns: str, lease: str, rtype: str, rid: str) -> None:
    """Hold ``rid`` by ``lease`` inside a transaction; nothing when ``lease`` is ""."""
    if not lease:
        return
    if tx.get(LEASES, ns, lease) is None:
        raise errdefs.NotFound("lease does not exist")
    tx.put(LEASE_RESOURCES, records.LeaseResource(ns, lease, rtype, rid))


def remove_from_lease(tx: Tx, ns: str, lease: str, rtype: str, rid: str) -> None:
    if lease:
        tx.delete(LEASE_RESOURCES, ns, lease, rtype, rid)


class LeaseManager:
    def __init__(self, db: MetadataDB) -> None:
        self.db = db

    async def create(self, ns: str, lease_id: str, labels: Mapping[str, str]) -> records.Lease:
        """Raises InvalidArgument for an empty id, AlreadyExists."""
        if not lease_id:
            raise errdefs.InvalidArgument("lease id must be provided")
        lease = records.Lease(
            ns, lease_id, {k: v for k, v in labels.items() if v}, records.now_ns()
        )

        def txn(tx: Tx) -> None:
            if tx.get(LEASES, ns, lease_id) is not None:
                raise errdefs.AlreadyExists(f"lease {q(lease_id)}")
            ensure_namespace(tx, ns)
            tx.put(LEASES, lease)

        await self.db.update(txn)
        return lease

    async def delete(self, ns: str, lease_id: str) -> None:
        """Drop the lease and its holds (the collector frees what it held). Raises NotFound."""

        def txn(tx: Tx) -> None:
            if not tx.delete(LEASES, ns, lease_id):
                raise errdefs.NotFound(f"lease {q(lease_id)}")
            tx.delete_all(LEASE_RESOURCES, ns, lease_id)

        await self.db.update(txn, dirty=True)

    async def list(self, ns: str, exprs: Sequence[str] = ()) -> list[records.Lease]:
        """Raises InvalidArgument for a filter that does not parse."""
        flt = await filters.parse_all_async(*exprs)
        found = await self.db.scan(LEASES, ns)
        return await filters.select(flt, found, lambda le: filters.adapt_lease(le.id, le.labels))

    async def add_resource(self, ns: str, lease_id: str, rtype: str, rid: str) -> None:
        """Raises NotFound (lease), InvalidArgument (resource), NotImplemented (type)."""

        def txn(tx: Tx) -> None:
            if tx.get(LEASES, ns, lease_id) is None:
                raise errdefs.NotFound(f"lease {q(lease_id)}")
            t, i = parse_resource(rtype, rid)
            tx.put(LEASE_RESOURCES, records.LeaseResource(ns, lease_id, t, i))

        await self.db.update(txn)

    async def delete_resource(self, ns: str, lease_id: str, rtype: str, rid: str) -> None:
        """Raises NotFound (lease), InvalidArgument (resource), NotImplemented (type)."""

        def txn(tx: Tx) -> None:
            if tx.get(LEASES, ns, lease_id) is None:
                raise errdefs.NotFound(f"lease {q(lease_id)}")
            t, i = parse_resource(rtype, rid)
            tx.delete(LEASE_RESOURCES, ns, lease_id, t, i)

        await self.db.update(txn, dirty=True)

    async def list_resources(self, ns: str, lease_id: str) -> builtins.list[records.LeaseResource]:
        """Content first, then ingests, then snapshots by snapshotter. Raises NotFound."""

        def txn(tx: Tx) -> builtins.list[records.LeaseResource]:
            if tx.get(LEASES, ns, lease_id) is None:
                raise errdefs.NotFound(f"lease {q(lease_id)}")
            return tx.scan(LEASE_RESOURCES, ns, lease_id)

        found = await self.db.view(txn)
        order = {CONTENT: 0, INGESTS: 1}
        return sorted(found, key=lambda r: (order.get(r.type, 2), r.type, r.id))
