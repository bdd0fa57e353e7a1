"""``RemoteContent`` for the namespaced store: the cluster index plus the fetcher."""

from __future__ import annotations

import logging

from api import errdefs
from daemon.metadata.remote import LabelChange
from daemon.peer.fetch import PeerFetcher, fetch_ref
from daemon.peer.index import ClusterIndex
from services.content.store import Info

log = logging.getLogger(__name__)


class PeerContent:
    def __init__(self, index: ClusterIndex, fetcher: PeerFetcher) -> None:
        self.index = index
        self.fetcher = fetcher

    async def info(self, ns: str, digest: str) -> Info | None:
        return await self.index.lookup(ns, digest)

    async def update(self, ns: str, digest: str, change: LabelChange) -> Info | None:
        return await self.index.update(ns, digest, change)

    def fetch_ref(self, digest: str) -> str:
        return fetch_ref(digest)

    async def fetch(self, ns: str, digest: str, size: int) -> None:
        holders = await self.index.holders(ns, digest)
        if not holders and not await self._held_here(digest, size):
            raise errdefs.NotFound(f"content digest {digest}: no live node holds it")
        await self.fetcher.fetch(digest, size, holders)

    async def _held_here(self, digest: str, size: int) -> bool:
        """The local store has the bytes already (another namespace wrote them)."""
        try:
            return (await self.fetcher.store.info(digest)).size == size
        except errdefs.NotFound:
            return False

    async def fetched(self, ns: str, digest: str) -> None:
        await self.index.add_holder(ns, digest)
