"""Blobs this node does not hold but another node of its cluster does.

On a cluster (the etcd metadata backend with the peer plugin),
``NamespacedContent`` consults a ``RemoteContent`` when a namespace asks for
a blob this node has no record of: ``info`` makes it visible (Content Info
reports it, a Write of it is refused with AlreadyExists, as for a local
blob), ``update`` changes its labels where they are kept (the cluster's
record), and reading it first brings the bytes here with ``fetch``; the
namespaced store then records the blob locally and reports it with
``fetched``.  The metadata layer knows no peers, addresses or transports:
those are the implementation's (``daemon.peer.remote``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from services.content.store import Info

LabelChange = Callable[[Mapping[str, str]], Mapping[str, str]]


class RemoteContent(Protocol):
    async def info(self, ns: str, digest: str) -> Info | None:
        """The cluster's record of ``digest`` in ``ns`` while a live node other
        than this one holds it; None otherwise.  Raises Unavailable when the
        cluster's index cannot be reached."""
        ...

    async def update(self, ns: str, digest: str, change: LabelChange) -> Info | None:
        """Replace the labels of the cluster's record with ``change(labels)``
        (a pure function; it may run more than once and may raise
        InvalidArgument, which propagates); None when there is no record."""
        ...

    def fetch_ref(self, digest: str) -> str:
        """The backend ingest ``fetch`` writes ``digest`` through (the collector
        leaves it alone while a fetch of ``digest`` is under way)."""
        ...

    async def fetch(self, ns: str, digest: str, size: int) -> None:
        """Bring the ``size`` bytes of ``digest`` into the local backend store,
        verified.  Concurrent calls for one digest share one transfer.

        Raises NotFound when no live node holds it any more, Unavailable when
        no holder could serve it (nothing partial is left in the backend),
        DataLoss when the bytes received do not hash to ``digest``.
        """
        ...

    async def fetched(self, ns: str, digest: str) -> None:
        """``ns`` now records ``digest`` on this node: tell the cluster this node holds it."""
        ...
