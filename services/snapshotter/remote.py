"""Layers a snapshotter provides itself: the hook behind "Prepare answers AlreadyExists".

An unpacker that is about to build the layer with chain id X prepares an
active snapshot with the label ``containerd.io/snapshot.ref=X``.  A *remote*
snapshotter (lazy pulling, a shared layer cache, ...) that can produce X
without unpacking answers that Prepare with AlreadyExists, after committing
X itself; containerd's metadata layer then finds X by that label and parent
and skips the unpack (metadata/snapshot.go ``createSnapshot``).  containerd's
own overlay and native snapshotters never do this; stargz and friends do.

``ProvidedLayers`` adds that behaviour to any Snapshotter: give it a
``LayerProvider`` that knows how to fill a snapshot with a layer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from api import errdefs
from services.snapshotter.snapshotter import (
    LABEL_SNAPSHOT_REF,
    Forwarding,
    Info,
    Kind,
    Mount,
    Snapshotter,
)
from services.snapshotter.storage import quote

log = logging.getLogger(__name__)


class LayerProvider(Protocol):
    """Something that can produce layers by name instead of having them unpacked."""

    async def provide(
        self, target: str, parent: str, labels: Mapping[str, str], mounts: Sequence[Mount]
    ) -> bool:
        """Fill the fresh active snapshot assembled by ``mounts`` with the layer ``target``.

        ``parent`` is the snapshot the layer goes on.  Return False to decline
        (the caller then unpacks as usual); an exception also declines, and
        whatever was written is discarded.
        """
        ...


class ProvidedLayers(Forwarding):
    """A Snapshotter that answers Prepare with AlreadyExists for layers it has or can provide.

    A Prepare labelled ``containerd.io/snapshot.ref=<target>``:

    - if ``target`` already exists here as a committed snapshot on the same
      parent: AlreadyExists at once;
    - if ``target`` names anything else here, the Prepare proceeds as usual;
    - else the snapshot is prepared and offered to the provider; if the
      provider fills it, it is committed as ``target`` (keeping the labels,
      so the reference label finds it), the key is released, and the answer
      is AlreadyExists;
    - else (declined) the prepared snapshot's mounts are returned as usual.
    """

    def __init__(self, inner: Snapshotter, provider: LayerProvider) -> None:
        super().__init__(inner)
        self.provider = provider

    async def _lookup(self, target: str) -> Info | None:
        try:
            return await self.inner.stat(target)
        except errdefs.NotFound:
            return None

    async def prepare(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        target = (labels or {}).get(LABEL_SNAPSHOT_REF, "")
        if not target:
            return await self.inner.prepare(key, parent, labels)
        exists = errdefs.AlreadyExists(f"target snapshot {quote(target)}")
        found = await self._lookup(target)
        if found is not None:
            if found.kind == Kind.COMMITTED and found.parent == parent:
                raise exists
            # The name is taken by something else: this layer cannot be it.
            return await self.inner.prepare(key, parent, labels)
        mounts = await self.inner.prepare(key, parent, labels)
        try:
            provided = await self.provider.provide(target, parent, dict(labels or {}), mounts)
        except Exception:
            log.warning("provider failed for %s; it will be unpacked", target, exc_info=True)
            # Start over from an empty layer: the provider may have left a part.
            await self.inner.remove(key)
            return await self.inner.prepare(key, parent, labels)
        if not provided:
            return mounts
        try:
            await self.inner.commit(target, key, labels)
        except errdefs.AlreadyExists:
            await self.inner.remove(key)  # provided concurrently by someone else
            raise exists from None
        log.info("provided layer %s on %r", target, parent)
        raise exists
