"""Where each record lives in etcd (layout version 1).

Every key starts with the configured prefix ``P`` (default ``/berthd``)::

    P/version                                  "1": the layout; a newer one is refused
    P/cluster/seq                              the store's sequence (next_sequence)
    P/cluster/namespaces/<name>                Namespace              cluster-wide
    P/cluster/images/<ns>/<name>               Image                  cluster-wide
    P/cluster/blobs/<ns>/<digest>              Blob (size, labels)    cluster-wide
    P/cluster/holders/<ns>/<digest>/<node>     <node> has the bytes   cluster-wide
    P/members/<node>                           every node that ever joined (kept)
    P/nodes/<node>                             a live node (bound to its etcd lease)
    P/node/<node>/containers/<ns>/<id>         Container              per node
    P/node/<node>/leases/<ns>/<id>             Lease                  per node
    P/node/<node>/lease_resources/<ns>/<lease>/<type>/<id>
    P/node/<node>/ingests/<ns>/<ref>           Ingest                 per node
    P/node/<node>/snapshots/<ns>/<snapshotter>/<key>
    P/node/<node>/blobs/<ns>/<digest>          this node holds the blob (its view of it)
    P/guard/<space>  P/guard/<space>/<ns>      bumped by every write under <space>[/<ns>]

Key fields are escaped (``%`` as ``%25``, ``/`` as ``%2F``) so a prefix of
fields never matches a longer field (``ns`` never matches ``ns2``).  Values
are JSON objects of the record's columns (``daemon.metadata.codec``; bytes
base64).

The content index is cluster-wide: a blob record per (namespace, digest)
with its size and labels, and one ``holders`` key per node that has the
bytes.  A node sees a blob in a namespace when the record exists *and* it
holds the bytes (its ``P/node/<node>/blobs`` key): a node never claims
bytes it cannot serve.  The record goes with its last holder.

*Guards* make scans safe against phantoms: an etcd compare on a range
catches keys added or changed after a revision but not keys deleted, so
every write also writes the guard of its space and of its space's first
field (the namespace), and a transaction that scanned a range compares that
guard's mod revision with the revision it read at.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

LAYOUT_VERSION = 1


def escape(field: str) -> str:
    return field.replace("%", "%25").replace("/", "%2F")


def unescape(part: str) -> str:
    return part.replace("%2F", "/").replace("%25", "%")


def range_end(prefix: bytes) -> bytes:
    """The first key after every key starting with ``prefix`` (etcd's prefix range)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


@dataclass(frozen=True)
class Space:
    """One kind of key: ``root`` + ``arity`` escaped fields."""

    root: str  # e.g. "/berthd/cluster/images/"
    guard: str  # e.g. "/berthd/guard/cluster/images"
    arity: int

    def key(self, fields: Sequence[str]) -> bytes:
        return (self.root + "/".join(escape(f) for f in fields)).encode()

    def prefix(self, fields: Sequence[str]) -> bytes:
        """Keys whose leading fields are ``fields`` (every key when empty)."""
        if not fields:
            return self.root.encode()
        return (self.root + "".join(escape(f) + "/" for f in fields)).encode()

    def fields(self, key: bytes) -> tuple[str, ...]:
        return tuple(unescape(p) for p in key.decode()[len(self.root) :].split("/"))

    def guards(self, fields: Sequence[str]) -> tuple[bytes, ...]:
        """The guards a write of a key with ``fields`` bumps."""
        return (self.guard.encode(), f"{self.guard}/{escape(fields[0])}".encode())

    def covering_guard(self, key: bytes) -> bytes:
        """The guard covering ``key`` or the prefix ``key`` (bumped by any write under it)."""
        rest = key[len(self.root) :]
        if not rest:
            return self.guard.encode()
        return f"{self.guard}/{rest.split(b'/', 1)[0].decode()}".encode()

    def scan_guard(self, fields: Sequence[str]) -> bytes:
        """The guard that covers a scan of ``prefix(fields)``."""
        if not fields:
            return self.guard.encode()
        return f"{self.guard}/{escape(fields[0])}".encode()


class Layout:
    """The keys of one cluster (``prefix``) as node ``node`` uses them."""

    CLUSTER_TABLES = {"namespaces": 1, "images": 2, "blobs": 2, "holders": 3}
    NODE_TABLES = {
        "containers": 2,
        "leases": 2,
        "lease_resources": 4,
        "ingests": 2,
        "snapshots": 3,
        "blobs": 2,
    }

    def __init__(self, prefix: str, node: str) -> None:
        self.prefix = prefix.rstrip("/")
        self.node = node
        p = self.prefix
        self.version_key = f"{p}/version".encode()
        self.sequence_key = f"{p}/cluster/seq".encode()
        self.members = Space(f"{p}/members/", f"{p}/guard/members", 1)
        self.nodes = Space(f"{p}/nodes/", f"{p}/guard/nodes", 1)
        self.cluster = {
            name: Space(f"{p}/cluster/{name}/", f"{p}/guard/cluster/{name}", arity)
            for name, arity in self.CLUSTER_TABLES.items()
        }
        self.local = self.node_tables(node)

    def node_tables(self, node: str) -> dict[str, Space]:
        n = escape(node)
        p = self.prefix
        return {
            name: Space(f"{p}/node/{n}/{name}/", f"{p}/guard/node/{n}/{name}", arity)
            for name, arity in self.NODE_TABLES.items()
        }

    def node_root(self, node: str) -> bytes:
        return f"{self.prefix}/node/{escape(node)}/".encode()

    def space_of(self, key: bytes) -> Space | None:
        """The data space ``key`` belongs to (None for the version, sequence or guard keys)."""
        text = key.decode(errors="replace")
        for space in (*self.cluster.values(), *self.local.values(), self.members):
            if text.startswith(space.root):
                return space
        node_root = f"{self.prefix}/node/"
        if text.startswith(node_root):
            node = unescape(text[len(node_root) :].split("/", 1)[0])
            for space in self.node_tables(node).values():
                if text.startswith(space.root):
                    return space
        return None
