"""Mark and sweep over the metadata (containerd's metadata/gc.go and gc/gc.go).

*Roots* are what is certainly in use:

- every lease that has not expired (``containerd.io/gc.expire``, RFC 3339),
  with the content, snapshots and ingests it holds (*flat* — only the objects
  themselves, not what they reference — when it has ``containerd.io/gc.flat``);
- every image's target blob and the objects its labels reference;
- every ingest that has not expired;
- every blob and snapshot labelled ``containerd.io/gc.root``;
- every container's snapshot and the objects its labels reference.

*References* lead from an object to more: a blob's or snapshot's
``containerd.io/gc.ref.content[.<name>|/<name>]`` labels name blobs, its
``containerd.io/gc.ref.snapshot.<snapshotter>[/<name>]`` labels name
snapshots; a snapshot also references its parent; an ingest of a blob that
already exists references that blob.

The *sweep* deletes from the metadata every lease, snapshot, ingest and blob
that was not reached.  Both run in one write transaction, so nothing changes
between marking and sweeping; freeing the bytes in the backends follows.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from daemon.metadata import records
from daemon.metadata.store import (
    BLOBS,
    CONTAINERS,
    IMAGES,
    INGESTS,
    LEASE_RESOURCES,
    LEASES,
    SNAPSHOTS,
    Tx,
)

log = logging.getLogger(__name__)

LABEL_ROOT = "containerd.io/gc.root"
LABEL_REF_CONTENT = "containerd.io/gc.ref.content"
LABEL_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot."
LABEL_EXPIRE = "containerd.io/gc.expire"
LABEL_FLAT = "containerd.io/gc.flat"


class Kind(enum.IntEnum):
    CONTENT = 1
    SNAPSHOT = 2
    LEASE = 5
    INGEST = 6


class Node(NamedTuple):
    """A collectable object: a snapshot's key is ``<snapshotter>/<key>``."""

    kind: Kind
    namespace: str
    key: str


# A node as the mark reaches it: ``flat`` when it is reached without following
# its references (the upper bits of containerd's resource type); the mark
# records it as the plain node.
Reached = tuple[Node, bool]


def _snapshot(ns: str, snapshotter: str, key: str) -> Node:
    return Node(Kind.SNAPSHOT, ns, f"{snapshotter}/{key}")


def label_refs(ns: str, labels: Mapping[str, str]) -> Iterator[Reached]:
    """The objects ``labels`` reference."""
    if not labels:
        return
    for k, v in sorted(labels.items()):
        if k.startswith(LABEL_REF_CONTENT):
            rest = k[len(LABEL_REF_CONTENT) :]
            # Allow naming references after "." or "/", ignore other suffixes.
            if rest == "" or rest[0] in "./":
                yield Node(Kind.CONTENT, ns, v), False
        elif k.startswith(LABEL_REF_SNAPSHOT):
            snapshotter = k[len(LABEL_REF_SNAPSHOT) :].split("/", 1)[0]
            yield _snapshot(ns, snapshotter, v), False


def _expired(labels: Mapping[str, str], now: datetime, what: str) -> bool:
    value = labels.get(LABEL_EXPIRE)
    if value is None:
        return False
    try:
        expires = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if expires.tzinfo is None:
            raise ValueError("no time zone")
    except ValueError:
        log.info("gc: ignoring invalid expiration value %r on %s", value, what)
        return False
    return now > expires


# The only fields of images and containers the mark reads: the rest (a
# container's spec above all) is not decoded.
_IMAGE_FIELDS = ("namespace", "target", "labels")
_CONTAINER_FIELDS = ("namespace", "snapshotter", "snapshot_key", "labels")


@dataclass
class _Tables:
    """Every table a collection reads, each read once: the mark looks objects
    up here (a lookup per reached object would be a query each), and the
    sweep goes over the same records."""

    leases: list[records.Lease]
    resources: dict[tuple[str, str], list[records.LeaseResource]]
    images: list[tuple[Any, ...]]  # _IMAGE_FIELDS
    ingests: dict[tuple[str, str], records.Ingest]
    blobs: dict[tuple[str, str], records.Blob]
    containers: list[tuple[Any, ...]]  # _CONTAINER_FIELDS
    snapshots: dict[tuple[str, str, str], records.Snapshot]

    @classmethod
    def read(cls, tx: Tx) -> _Tables:
        resources: dict[tuple[str, str], list[records.LeaseResource]] = {}
        for r in tx.scan(LEASE_RESOURCES):
            resources.setdefault((r.namespace, r.lease), []).append(r)
        return cls(
            leases=tx.scan(LEASES),
            resources=resources,
            images=tx.fields(IMAGES, _IMAGE_FIELDS),
            ingests={(i.namespace, i.ref): i for i in tx.scan(INGESTS)},
            blobs={(b.namespace, b.digest): b for b in tx.scan(BLOBS)},
            containers=tx.fields(CONTAINERS, _CONTAINER_FIELDS),
            snapshots={(s.namespace, s.snapshotter, s.key): s for s in tx.scan(SNAPSHOTS)},
        )


def roots(tables: _Tables, now: datetime) -> Iterator[Reached]:
    now_ns = int(now.timestamp() * 1e9)
    for lease in tables.leases:
        ns = lease.namespace
        if _expired(lease.labels, now, f"lease {lease.id}"):
            continue
        flat = LABEL_FLAT in lease.labels
        yield Node(Kind.LEASE, ns, lease.id), False
        for r in tables.resources.get((ns, lease.id), []):
            if r.type == "content":
                yield Node(Kind.CONTENT, ns, r.id), flat
            elif r.type == "ingests":
                yield Node(Kind.INGEST, ns, r.id), False
            elif r.type.startswith("snapshots/"):
                yield _snapshot(ns, r.type.split("/", 1)[1], r.id), flat
    for ns, target, labels in tables.images:
        yield Node(Kind.CONTENT, ns, target.digest), False
        yield from label_refs(ns, labels)
    for ingest in tables.ingests.values():
        if ingest.expire_at and ingest.expire_at > now_ns:
            yield Node(Kind.INGEST, ingest.namespace, ingest.ref), False
    for blob in tables.blobs.values():
        if LABEL_ROOT in blob.labels:
            yield Node(Kind.CONTENT, blob.namespace, blob.digest), False
    for ns, snapshotter, snapshot_key, labels in tables.containers:
        if snapshotter:
            yield _snapshot(ns, snapshotter, snapshot_key), False
        yield from label_refs(ns, labels)
    for s in tables.snapshots.values():
        if LABEL_ROOT in s.labels:
            yield _snapshot(s.namespace, s.snapshotter, s.key), False


def references(tables: _Tables, node: Node, flat: bool) -> Iterator[Reached]:
    kind, ns, key = node
    if kind == Kind.CONTENT:
        if flat:
            return
        blob = tables.blobs.get((ns, key))
        if blob is not None:  # a reference may point at nothing
            yield from label_refs(ns, blob.labels)
    elif kind == Kind.SNAPSHOT:
        snapshotter, _, name = key.partition("/")
        snap = tables.snapshots.get((ns, snapshotter, name))
        if snap is None:
            return
        if snap.parent:
            yield _snapshot(ns, snapshotter, snap.parent), flat
        if not flat:
            yield from label_refs(ns, snap.labels)
    elif kind == Kind.INGEST:
        ingest = tables.ingests.get((ns, key))
        if ingest is not None and ingest.expected:
            yield Node(Kind.CONTENT, ns, ingest.expected), False


def tricolor(
    start: Iterable[Reached], refs: Callable[[Node, bool], Iterable[Reached]]
) -> set[Node]:
    """Every node reachable from ``start``."""
    grays = list(start)
    seen: set[Reached] = set()
    reachable: set[Node] = set()
    while grays:
        reached = grays.pop()
        if reached in seen:
            continue
        seen.add(reached)
        for target in refs(*reached):
            if target not in seen:
                grays.append(target)
        reachable.add(reached[0])
    return reachable


@dataclass
class SweepResult:
    removed: dict[Kind, int] = field(default_factory=dict)
    content: bool = False  # blobs or ingests went: the content backend may hold garbage
    snapshotters: set[str] = field(default_factory=set)

    @property
    def total(self) -> int:
        return sum(self.removed.values())


def mark_and_sweep(tx: Tx, now: datetime) -> SweepResult:
    """Delete every unreachable lease, snapshot, ingest and blob (a write-transaction fn)."""
    tables = _Tables.read(tx)
    marked = tricolor(roots(tables, now), lambda n, flat: references(tables, n, flat))
    result = SweepResult()

    def gone(kind: Kind) -> None:
        result.removed[kind] = result.removed.get(kind, 0) + 1

    for lease in tables.leases:
        if Node(Kind.LEASE, lease.namespace, lease.id) not in marked:
            tx.delete(LEASES, lease.namespace, lease.id)
            tx.delete_all(LEASE_RESOURCES, lease.namespace, lease.id)
            gone(Kind.LEASE)
    for s in tables.snapshots.values():
        if _snapshot(s.namespace, s.snapshotter, s.key) not in marked:
            tx.delete(SNAPSHOTS, s.namespace, s.snapshotter, s.key)
            result.snapshotters.add(s.snapshotter)
            gone(Kind.SNAPSHOT)
    for ingest in tables.ingests.values():
        if Node(Kind.INGEST, ingest.namespace, ingest.ref) not in marked:
            tx.delete(INGESTS, ingest.namespace, ingest.ref)
            result.content = True
            gone(Kind.INGEST)
    for blob in tables.blobs.values():
        if Node(Kind.CONTENT, blob.namespace, blob.digest) not in marked:
            tx.delete(BLOBS, blob.namespace, blob.digest)
            result.content = True
            gone(Kind.CONTENT)
    return result
