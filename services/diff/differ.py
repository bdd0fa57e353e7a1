"""The differ contract: apply a layer onto mounts, compute a layer from mounts.

Vocabulary (containerd's ``diff`` package):

- a *layer* is a tar stream in OCI changeset form (``.wh.`` whiteouts, opaque
  directories), usually compressed, stored as a blob in the content store;
- *mounts* describe a filesystem as mount(2) calls; the differ mounts them on a
  temporary directory (or, for an overlay, writes straight into its upper
  directory) and always unmounts before it returns;
- *apply* extracts a layer onto mounts and answers the descriptor of what was
  extracted: the uncompressed tar's digest and size;
- *compare* walks a lower and an upper tree and writes their difference as a
  new layer blob through the content store.

A differ is bound to the content store of one namespace; the servicer builds
one per request.  Errors are the typed errors of ``api.errdefs``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from api.types import Descriptor as Descriptor
from api.types import Mount as Mount


class Applier(Protocol):
    async def apply(
        self,
        desc: Descriptor,
        mounts: Sequence[Mount],
        payloads: Mapping[str, bytes] | None = None,
        *,
        sync_fs: bool = False,
    ) -> Descriptor:
        """Extract the layer blob ``desc`` onto ``mounts``; answer the uncompressed descriptor.

        ``payloads`` are inputs for stream processors keyed by processor id;
        this differ has none and ignores them.  With ``sync_fs`` the target
        filesystem is synced before returning.

        Raises:
            errdefs.NotImplemented: ``desc.media_type`` is not a layer type this
                differ reads (callers fall through to their next differ).
            errdefs.InvalidArgument: bad mounts, or the layer is not a valid
                archive (corrupt compression, bad tar header, an entry this
                differ refuses such as an invalid whiteout, a hardlink to a
                missing target, a symlink loop).
            errdefs.NotFound: the blob is not in the content store.
            errdefs.FailedPrecondition: the blob's bytes do not match
                ``desc.digest`` (or ``desc.size``); the layer may have been
                partly applied, as with containerd, and the target should be
                discarded.
            errdefs.Unknown: a filesystem or mount operation failed.
        """
        ...


class Comparer(Protocol):
    async def compare(
        self,
        lower: Sequence[Mount],
        upper: Sequence[Mount],
        media_type: str = "",
        ref: str = "",
        labels: Mapping[str, str] | None = None,
        *,
        source_date_epoch: datetime | None = None,
    ) -> Descriptor:
        """Write the changes from ``lower`` to ``upper`` as a layer blob; answer its descriptor.

        ``media_type`` chooses the compression (gzip when empty); ``ref`` names
        the content ingest (a unique one when empty); ``labels`` go on the blob,
        plus ``containerd.io/uncompressed`` for compressed layers.  With
        ``source_date_epoch`` file times are clamped to it and whiteouts carry
        it, so the layer is reproducible (containerd 1.7's behaviour).

        Raises:
            errdefs.NotImplemented: ``media_type`` is not one this differ writes.
            errdefs.InvalidArgument: bad mounts.
            errdefs.Unavailable, errdefs.FailedPrecondition …: from the content
                store, as it raised them.
            errdefs.Unknown: a filesystem or mount operation failed.
        """
        ...


class ContentInfo(Protocol):
    @property
    def digest(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def labels(self) -> Mapping[str, str]: ...


class BlobReader(Protocol):
    @property
    def size(self) -> int: ...

    def chunks(self, offset: int = 0, size: int = 0, chunk: int = ...) -> AsyncIterator[bytes]:
        """The blob's bytes from ``offset`` on, in chunks the store chooses."""
        ...

    async def close(self) -> None: ...


class BlobWriter(Protocol):
    async def write(self, data: bytes) -> int: ...

    async def truncate(self, size: int) -> None: ...

    async def commit(
        self, size: int = 0, expected: str = "", labels: Mapping[str, str] | None = None
    ) -> str:
        """Publish the blob; AlreadyExists when it is already there."""
        ...

    async def close(self) -> None: ...


class ContentStore(Protocol):
    """What a differ needs of a content store (``services.content.store``'s contract)."""

    async def info(self, digest: str) -> ContentInfo:
        """NotFound when the blob is absent."""
        ...

    async def reader(self, digest: str) -> BlobReader:
        """NotFound when the blob is absent."""
        ...

    async def writer(self, ref: str, total: int = 0, expected: str = "") -> BlobWriter:
        """Unavailable (locked) when another writer holds ``ref``."""
        ...

    async def update_labels(self, digest: str, labels: Mapping[str, str]) -> None:
        """Set ``labels`` (keys given) on the blob, keeping the others."""
        ...

    async def abort(self, ref: str) -> None:
        """NotFound when no ingest has ``ref``."""
        ...
