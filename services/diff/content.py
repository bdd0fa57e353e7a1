"""The content store a differ reads and writes: the Content API at ``--content-address``.

The differ works for the caller: its blob reads and writes happen in the
caller's namespace and under the caller's lease, so an unpack's new blobs are
protected from garbage collection exactly as if containerd's in-process
differ had written them.  ``ContentConnection.for_request`` therefore answers
a store whose every call carries the incoming request's ``containerd-namespace``
and ``containerd-lease`` headers.

Blob access goes through ``services.content.proxy`` (the content plugin's
client); this module only binds it to a request's headers.

With a ``read_address`` (the content plugin behind the daemon), the bytes of
a layer to apply are read there directly rather than relayed by the daemon
(one hop and two copies less per MiB).  Whether the caller may see the blob
is still the daemon's to say: its Info, in the caller's namespace, comes
first.  A blob the plugin does not hold (one only another node of a cluster
has) is read through the daemon, which fetches it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import grpc

from api import errdefs, namespaces
from api.types import LEASE_HEADER
from services.content.proxy import ProxyContentStore
from services.content.store import ContentStore, Info, ReaderAt, Writer
from services.harness.server import CHANNEL_OPTIONS

FORWARDED = (namespaces.GRPC_HEADER, LEASE_HEADER)

Metadata = tuple[tuple[str, str], ...]


def forwarded(incoming: Any) -> Metadata:
    """The headers of an incoming request that outgoing calls repeat."""
    out = []
    for key, value in incoming or ():
        if key.lower() in FORWARDED:
            out.append((key.lower(), value.decode() if isinstance(value, bytes) else value))
    return tuple(out)


class ContentAdapter:
    """The differ's ContentStore over a content store (a proxy one, or a local one in tests);
    ``blobs``, when given, is where the bytes of blobs ``store`` lets us see are read."""

    def __init__(self, store: ContentStore, blobs: ContentStore | None = None) -> None:
        self._store = store
        self._blobs = blobs

    async def info(self, digest: str) -> Info:
        return await self._store.info(digest)

    async def reader(self, digest: str) -> ReaderAt:
        if self._blobs is None:
            return await self._store.reader(digest)
        await self._store.info(digest)  # NotFound unless the caller's namespace has it
        try:
            return await self._blobs.reader(digest)
        except errdefs.NotFound:
            return await self._store.reader(digest)

    async def writer(self, ref: str, total: int = 0, expected: str = "") -> Writer:
        return await self._store.writer(ref, total, expected)

    async def update_labels(self, digest: str, labels: Mapping[str, str]) -> None:
        info = await self._store.info(digest)
        await self._store.update(
            replace(info, labels={**info.labels, **labels}),
            [f"labels.{key}" for key in labels],
        )

    async def abort(self, ref: str) -> None:
        await self._store.abort(ref)


def _channel(address: str) -> grpc.aio.Channel:
    target = address if "://" in address else "unix://" + address
    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)


class ContentConnection:
    """One channel to the Content API (and one to ``read_address``), shared by
    every request, and opened by the first: a differ nobody calls never
    starts gRPC's client (its threads and a few MB)."""

    def __init__(self, address: str, read_address: str | None = None) -> None:
        self.address = address
        self.read_address = read_address
        self._channel: grpc.aio.Channel | None = None
        self._blobs: ProxyContentStore | None = None
        self._read_channel: grpc.aio.Channel | None = None

    def for_request(self, metadata: Metadata) -> ContentAdapter:
        if self._channel is None:
            self._channel = _channel(self.address)
            if self.read_address:
                self._read_channel = _channel(self.read_address)
                self._blobs = ProxyContentStore(
                    self._read_channel, name=f"content at {self.read_address}"
                )
        name = f"content at {self.address}"
        store = ProxyContentStore(self._channel, metadata=metadata, name=name)
        return ContentAdapter(store, self._blobs)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        if self._read_channel is not None:
            await self._read_channel.close()
