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


@dataclass(frozen=True, order=True)
class Node:
    """A collectable object: a snapshot's key is ``<snapshotter>/<key>``.

    ``flat`` nodes are reached without following their references; the mark
    records them as plain nodes (the upper bits of containerd's resource type).
    """

    kind: Kind
    namespace: str
    key: str
    flat: bool = field(default=False, compare=False)

    @property
    def plain(self) -> Node:
        return Node(self.kind, self.namespace, self.key)


def _snapshot(ns: str, snapshotter: str, key: str, flat: bool = False) -> Node:
    return Node(Kind.SNAPSHOT, ns, f"{snapshotter}/{key}", flat)


def label_refs(ns: str, labels: Mapping[str, str]) -> Iterator[Node]:
    """The objects ``labels`` reference."""
    for k, v in sorted(labels.items()):
        if k.startswith(LABEL_REF_CONTENT):
            rest = k[len(LABEL_REF_CONTENT) :]
            # Allow naming references after "." or "/", ignore other suffixes.
            if rest == "" or rest[0] in "./":
                yield Node(Kind.CONTENT, ns, v)
        elif k.startswith(LABEL_REF_SNAPSHOT):
            snapshotter = k[len(LABEL_REF_SNAPSHOT) :].split("/", 1)[0]
            yield _snapshot(ns, snapshotter, v)


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


def roots(tx: Tx, now: datetime) -> Iterator[Node]:
    now_ns = int(now.timestamp() * 1e9)
    resources: dict[tuple[str, str], list[records.LeaseResource]] = {}
    for r in tx.scan(LEASE_RESOURCES):
        resources.setdefault((r.namespace, r.lease), []).append(r)
    for lease in tx.scan(LEASES):
        ns = lease.namespace
        if _expired(lease.labels, now, f"lease {lease.id}"):
            continue
        flat = LABEL_FLAT in lease.labels
        yield Node(Kind.LEASE, ns, lease.id)
        for r in resources.get((ns, lease.id), []):
            if r.type == "content":
                yield Node(Kind.CONTENT, ns, r.id, flat)
            elif r.type == "ingests":
                yield Node(Kind.INGEST, ns, r.id)
            elif r.type.startswith("snapshots/"):
                yield _snapshot(ns, r.type.split("/", 1)[1], r.id, flat)
    for image in tx.scan(IMAGES):
        yield Node(Kind.CONTENT, image.namespace, image.target.digest)
        yield from label_refs(image.namespace, image.labels)
    for ingest in tx.scan(INGESTS):
        if ingest.expire_at and ingest.expire_at > now_ns:
            yield Node(Kind.INGEST, ingest.namespace, ingest.ref)
    for blob in tx.scan(BLOBS):
        if LABEL_ROOT in blob.labels:
            yield Node(Kind.CONTENT, blob.namespace, blob.digest)
    for c in tx.scan(CONTAINERS):
        if c.snapshotter:
            yield _snapshot(c.namespace, c.snapshotter, c.snapshot_key)
        yield from label_refs(c.namespace, c.labels)
    for s in tx.scan(SNAPSHOTS):
        if LABEL_ROOT in s.labels:
            yield _snapshot(s.namespace, s.snapshotter, s.key)


def references(tx: Tx, node: Node) -> Iterator[Node]:
    ns = node.namespace
    if node.kind == Kind.CONTENT:
        if node.flat:
            return
        blob = tx.get(BLOBS, ns, node.key)
        if blob is not None:  # a reference may point at nothing
            yield from label_refs(ns, blob.labels)
    elif node.kind == Kind.SNAPSHOT:
        snapshotter, _, key = node.key.partition("/")
        snap = tx.get(SNAPSHOTS, ns, snapshotter, key)
        if snap is None:
            return
        if snap.parent:
            yield _snapshot(ns, snapshotter, snap.parent, node.flat)
        if not node.flat:
            yield from label_refs(ns, snap.labels)
    elif node.kind == Kind.INGEST:
        ingest = tx.get(INGESTS, ns, node.key)
        if ingest is not None and ingest.expected:
            yield Node(Kind.CONTENT, ns, ingest.expected)


def tricolor(start: Iterable[Node], refs: Callable[[Node], Iterable[Node]]) -> set[Node]:
    """Everything reachable from ``start`` (flat bits stripped in the result)."""
    grays = list(start)
    seen: set[tuple[Node, bool]] = set()
    reachable: set[Node] = set()
    while grays:
        node = grays.pop()
        ident = (node, node.flat)
        if ident in seen:
            continue
        seen.add(ident)
        for target in refs(node):
            if (target, target.flat) not in seen:
                grays.append(target)
        reachable.add(node.plain)
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
    marked = tricolor(roots(tx, now), lambda n: references(tx, n))
    result = SweepResult()

    def gone(kind: Kind) -> None:
        result.removed[kind] = result.removed.get(kind, 0) + 1

    for lease in tx.scan(LEASES):
        if Node(Kind.LEASE, lease.namespace, lease.id) not in marked:
            tx.delete(LEASES, lease.namespace, lease.id)
            tx.delete_all(LEASE_RESOURCES, lease.namespace, lease.id)
            gone(Kind.LEASE)
    for s in tx.scan(SNAPSHOTS):
        if _snapshot(s.namespace, s.snapshotter, s.key) not in marked:
            tx.delete(SNAPSHOTS, s.namespace, s.snapshotter, s.key)
            result.snapshotters.add(s.snapshotter)
            gone(Kind.SNAPSHOT)
    for ingest in tx.scan(INGESTS):
        if Node(Kind.INGEST, ingest.namespace, ingest.ref) not in marked:
            tx.delete(INGESTS, ingest.namespace, ingest.ref)
            result.content = True
            gone(Kind.INGEST)
    for blob in tx.scan(BLOBS):
        if Node(Kind.CONTENT, blob.namespace, blob.digest) not in marked:
            tx.delete(BLOBS, blob.namespace, blob.digest)
            result.content = True
            gone(Kind.CONTENT)
    return result
