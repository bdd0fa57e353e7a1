"""What the peer plugin needs from the cluster's content index.

The index lives in the cluster's metadata (the etcd backend): per namespace
and digest, the blob's record (size, labels) and the set of nodes that hold
its bytes; per live node, its liveness key, which carries the node's peer
address once the peer plugin has published it.  Unit tests use an
in-process implementation of the same protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from daemon.metadata.remote import LabelChange
from services.content.store import Info


@dataclass(frozen=True)
class Holder:
    """A live node that holds a blob, and the address its peer server listens on."""

    node: str
    address: str


@runtime_checkable
class ClusterIndex(Protocol):
    @property
    def node(self) -> str:
        """This node's name in the cluster."""
        ...

    async def lookup(self, ns: str, digest: str) -> Info | None:
        """The record of ``digest`` in ``ns`` while a live node other than this
        one holds it (None otherwise).  Raises Unavailable when the index
        cannot be reached."""
        ...

    async def update(self, ns: str, digest: str, change: LabelChange) -> Info | None:
        """Set the record's labels to ``change(labels)`` in one transaction
        (``change`` is pure; its InvalidArgument propagates); None when
        ``ns`` has no record of ``digest``."""
        ...

    async def holders(self, ns: str, digest: str) -> Sequence[Holder]:
        """The live nodes other than this one that hold ``digest`` in ``ns``
        and have published a peer address, in the order to try them."""
        ...

    async def add_holder(self, ns: str, digest: str) -> None:
        """Record this node as a holder of ``digest`` in ``ns`` (idempotent)."""
        ...

    async def publish(self, address: str) -> None:
        """Publish this node's peer address with its liveness key."""
        ...
