"""Namespaces: create, get, list, label and delete (containerd's metadata/namespaces.go
and services/namespaces/local.go)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from api import errdefs
from daemon.metadata import records
from daemon.metadata.db import MetadataDB
from daemon.metadata.store import (
    BLOBS,
    CONTAINERS,
    IMAGES,
    INGESTS,
    LEASE_RESOURCES,
    LEASES,
    NAMESPACES,
    SNAPSHOTS,
    Tx,
)
from daemon.metadata.validation import apply_label_paths, q, validate_identifier, validate_labels


class NamespaceStore:
    def __init__(self, db: MetadataDB) -> None:
        self.db = db

    async def create(self, name: str, labels: Mapping[str, str]) -> records.Namespace:
        """Raises InvalidArgument for a bad name or label, AlreadyExists when it exists."""
        validate_identifier(name)
        validate_labels(labels, "namespace.Labels")
        ns = records.Namespace(name, {k: v for k, v in labels.items() if v})

        def txn(tx: Tx) -> None:
            if tx.get(NAMESPACES, name) is not None:
                raise errdefs.AlreadyExists(f"namespace {q(name)}")
            tx.put(NAMESPACES, ns)

        await self.db.update(txn)
        return ns

    async def get(self, name: str) -> records.Namespace:
        """A namespace nobody created reads as one without labels, as in containerd 1.6."""
        found = await self.db.get(NAMESPACES, name)
        return found or records.Namespace(name, {})

    async def list(self) -> list[records.Namespace]:
        return await self.db.scan(NAMESPACES)

    async def update(
        self, name: str, labels: Mapping[str, str], paths: Sequence[str]
    ) -> records.Namespace:
        """Replace the labels (no paths) or set ``labels.<key>`` ones.

        Like containerd, this creates the namespace when it does not exist.
        Raises InvalidArgument for another path, a bad name or label.
        """
        validate_identifier(name)
        validate_labels(labels, "namespace.Labels")
        for path in paths:
            if not path.startswith("labels."):
                raise errdefs.InvalidArgument(f"cannot update {q(path)} field")

        def txn(tx: Tx) -> records.Namespace:
            current = tx.get(NAMESPACES, name) or records.Namespace(name, {})
            new: Mapping[str, str] = current.labels
            for path in paths or ["labels"]:
                applied = apply_label_paths(new, labels, path)
                assert applied is not None
                new = applied
            ns = records.Namespace(name, new)
            tx.put(NAMESPACES, ns)
            return ns

        return await self.db.update(txn)

    async def delete(self, name: str) -> None:
        """Raises NotFound when it does not exist, FailedPrecondition while it holds objects.

        Leases and ingests do not keep a namespace alive (containerd drops
        them with the namespace's bucket); the collector then frees what they held.
        """

        def txn(tx: Tx) -> bool:
            if tx.get(NAMESPACES, name) is None:
                raise errdefs.NotFound(f"namespace {q(name)}")
            remaining = _remaining(tx, name)
            if remaining:
                raise errdefs.FailedPrecondition(
                    f"namespace {q(name)} must be empty, but it still has {', '.join(remaining)}"
                )
            dropped = tx.delete_all(LEASES, name) + tx.delete_all(INGESTS, name)
            tx.delete_all(LEASE_RESOURCES, name)
            tx.delete(NAMESPACES, name)
            return dropped > 0

        dropped = await self.db.update(txn)
        if dropped:
            self.db.mark(dirty=True, content=True)


def _remaining(tx: Tx, name: str) -> list[str]:
    """What still lives in a namespace, in containerd's words (metadata/namespaces.go listNs)."""
    out = []
    if tx.count(IMAGES, name):
        out.append("images")
    if tx.count(BLOBS, name):
        out.append("blobs")
    if tx.count(CONTAINERS, name):
        out.append("containers")
    snapshotters = sorted({s.snapshotter for s in tx.scan(SNAPSHOTS, name)})
    out.extend(f'snapshots on "{sn}" snapshotter' for sn in snapshotters)
    return out
