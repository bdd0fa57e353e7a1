"""``containerd.services.snapshots.v1.Snapshots`` over any ``Snapshotter``.

A thin edge: check the request, pick the snapshotter, call it, convert.
Typed errors pass through untouched; the harness's EdgeInterceptor turns them
into status codes.

Which snapshotter serves a request is decided by a *resolver* given the
request's ``snapshotter`` field and namespace:

- ``SnapshotsServicer.single(sn)`` serves one snapshotter whatever the request
  names, as containerd's ``contrib/snapshotservice`` does for proxy plugins
  (containerd sends the plugin's name, which the plugin need not know);
- ``SnapshotsServicer.by_name(mapping)`` serves several by name and answers
  InvalidArgument for a missing or unknown one, as containerd's own
  ``services/snapshots/service.go``.

A daemon that namespaces snapshots passes its own resolver and receives the
namespace (None when the caller sent none).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import grpc
from google.protobuf import empty_pb2

from api import errdefs, namespaces
from api.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from services.snapshotter import wire
from services.snapshotter.snapshotter import Snapshotter, by_name, validate_labels

log = logging.getLogger(__name__)

SERVICE_NAME = "containerd.services.snapshots.v1.Snapshots"

# Infos per List message, as containerd batches them.
LIST_BATCH = 100

Resolver = Callable[[str, str | None], Snapshotter]
Context = grpc.aio.ServicerContext[Any, Any]


def _namespace(context: Context) -> str | None:
    return namespaces.from_metadata(context.invocation_metadata())


def _require(value: str, field: str) -> None:
    if not value:
        raise errdefs.InvalidArgument(f"{field} must not be empty")


class SnapshotsServicer(snapshots_pb2_grpc.SnapshotsServicer):
    def __init__(self, resolve: Resolver) -> None:
        self._resolve = resolve

    @classmethod
    def single(cls, snapshotter: Snapshotter) -> SnapshotsServicer:
        return cls(lambda _name, _ns: snapshotter)

    @classmethod
    def by_name(cls, snapshotters: Mapping[str, Snapshotter]) -> SnapshotsServicer:
        def resolve(name: str, _ns: str | None) -> Snapshotter:
            return by_name(snapshotters, name)

        return cls(resolve)

    def _sn(self, name: str, context: Context) -> Snapshotter:
        return self._resolve(name, _namespace(context))

    async def Prepare(
        self, request: snapshots_pb2.PrepareSnapshotRequest, context: Context
    ) -> snapshots_pb2.PrepareSnapshotResponse:
        _require(request.key, "key")
        validate_labels(request.labels)
        sn = self._sn(request.snapshotter, context)
        log.debug("prepare %s parent %r", request.key, request.parent)
        mounts = await sn.prepare(request.key, request.parent, wire.labels_or_none(request.labels))
        return snapshots_pb2.PrepareSnapshotResponse(mounts=wire.mounts_to_wire(mounts))

    async def View(
        self, request: snapshots_pb2.ViewSnapshotRequest, context: Context
    ) -> snapshots_pb2.ViewSnapshotResponse:
        _require(request.key, "key")
        validate_labels(request.labels)
        sn = self._sn(request.snapshotter, context)
        log.debug("view %s parent %r", request.key, request.parent)
        mounts = await sn.view(request.key, request.parent, wire.labels_or_none(request.labels))
        return snapshots_pb2.ViewSnapshotResponse(mounts=wire.mounts_to_wire(mounts))

    async def Mounts(
        self, request: snapshots_pb2.MountsRequest, context: Context
    ) -> snapshots_pb2.MountsResponse:
        sn = self._sn(request.snapshotter, context)
        mounts = await sn.mounts(request.key)
        return snapshots_pb2.MountsResponse(mounts=wire.mounts_to_wire(mounts))

    async def Commit(
        self, request: snapshots_pb2.CommitSnapshotRequest, context: Context
    ) -> empty_pb2.Empty:
        _require(request.name, "name")
        validate_labels(request.labels)
        sn = self._sn(request.snapshotter, context)
        log.debug("commit %s as %s", request.key, request.name)
        await sn.commit(request.name, request.key, wire.labels_or_none(request.labels))
        return empty_pb2.Empty()

    async def Remove(
        self, request: snapshots_pb2.RemoveSnapshotRequest, context: Context
    ) -> empty_pb2.Empty:
        sn = self._sn(request.snapshotter, context)
        log.debug("remove %s", request.key)
        await sn.remove(request.key)
        return empty_pb2.Empty()

    async def Stat(
        self, request: snapshots_pb2.StatSnapshotRequest, context: Context
    ) -> snapshots_pb2.StatSnapshotResponse:
        sn = self._sn(request.snapshotter, context)
        info = await sn.stat(request.key)
        return snapshots_pb2.StatSnapshotResponse(info=wire.info_to_wire(info))

    async def Update(
        self, request: snapshots_pb2.UpdateSnapshotRequest, context: Context
    ) -> snapshots_pb2.UpdateSnapshotResponse:
        _require(request.info.name, "info.name")
        validate_labels(request.info.labels)
        sn = self._sn(request.snapshotter, context)
        info = await sn.update(wire.info_from_wire(request.info), *request.update_mask.paths)
        return snapshots_pb2.UpdateSnapshotResponse(info=wire.info_to_wire(info))

    async def List(
        self, request: snapshots_pb2.ListSnapshotsRequest, context: Context
    ) -> AsyncIterator[snapshots_pb2.ListSnapshotsResponse]:
        sn = self._sn(request.snapshotter, context)
        batch: list[snapshots_pb2.Info] = []
        async for info in sn.walk(*request.filters):
            batch.append(wire.info_to_wire(info))
            if len(batch) >= LIST_BATCH:
                yield snapshots_pb2.ListSnapshotsResponse(info=batch)
                batch = []
        if batch:
            yield snapshots_pb2.ListSnapshotsResponse(info=batch)

    async def Usage(
        self, request: snapshots_pb2.UsageRequest, context: Context
    ) -> snapshots_pb2.UsageResponse:
        sn = self._sn(request.snapshotter, context)
        return wire.usage_to_wire(await sn.usage(request.key))

    async def Cleanup(
        self, request: snapshots_pb2.CleanupRequest, context: Context
    ) -> empty_pb2.Empty:
        sn = self._sn(request.snapshotter, context)
        await sn.cleanup()
        return empty_pb2.Empty()
