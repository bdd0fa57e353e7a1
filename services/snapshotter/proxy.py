"""A ``Snapshotter`` over gRPC: the client side of ``containerd.services.snapshots.v1``.

Works against our plugin, the daemon's federated service and containerd's own
service alike (containerd's ``snapshots/proxy/proxy.go``).  ``name`` goes in
every request's ``snapshotter`` field; ``namespace``, when given, travels in
the ``containerd-namespace`` header (containerd requires one, a plugin
ignores it).  Status codes come back as the typed errors of ``api.errdefs``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import grpc
from google.protobuf import field_mask_pb2

from api import errgrpc, namespaces
from api.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from services.snapshotter import wire
from services.snapshotter.snapshotter import Info, Mount, Usage


class ProxySnapshotter:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        name: str,
        *,
        namespace: str | None = None,
        timeout: float | None = None,
        context: str = "",
    ) -> None:
        self.name = name
        self.namespace = namespace
        self._stub = snapshots_pb2_grpc.SnapshotsStub(channel)
        self._metadata = namespaces.outgoing(namespace) if namespace else None
        self._timeout = timeout
        self._context = context or f"proxy snapshotter {name}"

    def with_namespace(self, namespace: str | None) -> ProxySnapshotter:
        """The same connection and snapshotter, speaking for another namespace."""
        clone = object.__new__(ProxySnapshotter)
        clone.__dict__.update(self.__dict__)
        clone.namespace = namespace
        clone._metadata = namespaces.outgoing(namespace) if namespace else None
        return clone

    async def stat(self, key: str) -> Info:
        with errgrpc.translate(self._context):
            resp = await self._stub.Stat(
                snapshots_pb2.StatSnapshotRequest(snapshotter=self.name, key=key),
                metadata=self._metadata,
                timeout=self._timeout,
            )
        return wire.info_from_wire(resp.info)

    async def update(self, info: Info, *fieldpaths: str) -> Info:
        request = snapshots_pb2.UpdateSnapshotRequest(
            snapshotter=self.name,
            info=wire.info_to_wire(info),
            update_mask=field_mask_pb2.FieldMask(paths=list(fieldpaths)),
        )
        with errgrpc.translate(self._context):
            resp = await self._stub.Update(request, metadata=self._metadata, timeout=self._timeout)
        return wire.info_from_wire(resp.info)

    async def usage(self, key: str) -> Usage:
        with errgrpc.translate(self._context):
            resp = await self._stub.Usage(
                snapshots_pb2.UsageRequest(snapshotter=self.name, key=key),
                metadata=self._metadata,
                timeout=self._timeout,
            )
        return wire.usage_from_wire(resp)

    async def mounts(self, key: str) -> list[Mount]:
        with errgrpc.translate(self._context):
            resp = await self._stub.Mounts(
                snapshots_pb2.MountsRequest(snapshotter=self.name, key=key),
                metadata=self._metadata,
                timeout=self._timeout,
            )
        return wire.mounts_from_wire(resp.mounts)

    async def prepare(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        request = snapshots_pb2.PrepareSnapshotRequest(
            snapshotter=self.name, key=key, parent=parent, labels=dict(labels or {})
        )
        with errgrpc.translate(self._context):
            resp = await self._stub.Prepare(request, metadata=self._metadata, timeout=self._timeout)
        return wire.mounts_from_wire(resp.mounts)

    async def view(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        request = snapshots_pb2.ViewSnapshotRequest(
            snapshotter=self.name, key=key, parent=parent, labels=dict(labels or {})
        )
        with errgrpc.translate(self._context):
            resp = await self._stub.View(request, metadata=self._metadata, timeout=self._timeout)
        return wire.mounts_from_wire(resp.mounts)

    async def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        request = snapshots_pb2.CommitSnapshotRequest(
            snapshotter=self.name, name=name, key=key, labels=dict(labels or {})
        )
        with errgrpc.translate(self._context):
            await self._stub.Commit(request, metadata=self._metadata, timeout=self._timeout)

    async def remove(self, key: str) -> None:
        with errgrpc.translate(self._context):
            await self._stub.Remove(
                snapshots_pb2.RemoveSnapshotRequest(snapshotter=self.name, key=key),
                metadata=self._metadata,
                timeout=self._timeout,
            )

    async def walk(self, *filters: str) -> AsyncIterator[Info]:
        request = snapshots_pb2.ListSnapshotsRequest(snapshotter=self.name, filters=list(filters))
        # The error of a stream surfaces while iterating: keep it inside translate.
        with errgrpc.translate(self._context):
            call = self._stub.List(request, metadata=self._metadata, timeout=self._timeout)
            try:
                async for resp in call:
                    for info in resp.info:
                        yield wire.info_from_wire(info)
            finally:
                call.cancel()

    async def cleanup(self) -> None:
        with errgrpc.translate(self._context):
            await self._stub.Cleanup(
                snapshots_pb2.CleanupRequest(snapshotter=self.name),
                metadata=self._metadata,
                timeout=self._timeout,
            )

    async def close(self) -> None:
        """The channel belongs to the caller; nothing to release here."""
