"""containerd.services.snapshots.v1.Snapshots over the namespaced snapshotters
(services/snapshots/service.go and the events of snapshotters.go)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from google.protobuf import empty_pb2

from api.containerd.events import snapshot_pb2 as events
from api.containerd.services.snapshots.v1 import snapshots_pb2 as api
from api.containerd.services.snapshots.v1 import snapshots_pb2_grpc
from daemon.events.exchange import Publisher
from daemon.metadata.servicers.common import Context, lease, namespace
from daemon.metadata.snapshots import NamespacedSnapshotter
from services.snapshotter import wire
from services.snapshotter.snapshotter import Info, by_name

SERVICE_NAME = "containerd.services.snapshots.v1.Snapshots"
LIST_BATCH = 100


class SnapshotsServicer(snapshots_pb2_grpc.SnapshotsServicer):
    def __init__(
        self, snapshotters: Mapping[str, NamespacedSnapshotter], publisher: Publisher
    ) -> None:
        self.snapshotters = dict(snapshotters)
        self.publisher = publisher

    def _get(self, name: str) -> NamespacedSnapshotter:
        return by_name(self.snapshotters, name)

    async def Prepare(
        self, request: api.PrepareSnapshotRequest, context: Context
    ) -> api.PrepareSnapshotResponse:
        sn = self._get(request.snapshotter)
        ns = namespace(context)
        mounts = await sn.prepare(
            ns, request.key, request.parent, dict(request.labels), lease(context)
        )
        await self.publisher.publish(
            ns,
            events.SnapshotPrepare(
                key=request.key, parent=request.parent, snapshotter=request.snapshotter
            ),
        )
        return api.PrepareSnapshotResponse(mounts=wire.mounts_to_wire(mounts))

    async def View(
        self, request: api.ViewSnapshotRequest, context: Context
    ) -> api.ViewSnapshotResponse:
        sn = self._get(request.snapshotter)
        mounts = await sn.view(
            namespace(context), request.key, request.parent, dict(request.labels), lease(context)
        )
        return api.ViewSnapshotResponse(mounts=wire.mounts_to_wire(mounts))

    async def Mounts(self, request: api.MountsRequest, context: Context) -> api.MountsResponse:
        sn = self._get(request.snapshotter)
        mounts = await sn.mounts(namespace(context), request.key)
        return api.MountsResponse(mounts=wire.mounts_to_wire(mounts))

    async def Commit(self, request: api.CommitSnapshotRequest, context: Context) -> empty_pb2.Empty:
        sn = self._get(request.snapshotter)
        ns = namespace(context)
        await sn.commit(ns, request.name, request.key, dict(request.labels), lease(context))
        await self.publisher.publish(
            ns,
            events.SnapshotCommit(
                key=request.key, name=request.name, snapshotter=request.snapshotter
            ),
        )
        return empty_pb2.Empty()

    async def Remove(self, request: api.RemoveSnapshotRequest, context: Context) -> empty_pb2.Empty:
        sn = self._get(request.snapshotter)
        ns = namespace(context)
        await sn.remove(ns, request.key, lease(context))
        await self.publisher.publish(
            ns, events.SnapshotRemove(key=request.key, snapshotter=request.snapshotter)
        )
        return empty_pb2.Empty()

    async def Stat(
        self, request: api.StatSnapshotRequest, context: Context
    ) -> api.StatSnapshotResponse:
        sn = self._get(request.snapshotter)
        return api.StatSnapshotResponse(
            info=wire.info_to_wire(await sn.stat(namespace(context), request.key))
        )

    async def Update(
        self, request: api.UpdateSnapshotRequest, context: Context
    ) -> api.UpdateSnapshotResponse:
        sn = self._get(request.snapshotter)
        req = request.info
        info = Info(name=req.name, parent=req.parent, labels=dict(req.labels))
        paths = list(request.update_mask.paths) if request.HasField("update_mask") else []
        updated = await sn.update(namespace(context), info, *paths)
        return api.UpdateSnapshotResponse(info=wire.info_to_wire(updated))

    async def List(
        self, request: api.ListSnapshotsRequest, context: Context
    ) -> AsyncIterator[api.ListSnapshotsResponse]:
        sn = self._get(request.snapshotter)
        infos = await sn.walk(namespace(context), *request.filters)
        for i in range(0, len(infos), LIST_BATCH):
            yield api.ListSnapshotsResponse(
                info=[wire.info_to_wire(x) for x in infos[i : i + LIST_BATCH]]
            )

    async def Usage(self, request: api.UsageRequest, context: Context) -> api.UsageResponse:
        sn = self._get(request.snapshotter)
        usage = await sn.usage(namespace(context), request.key)
        return api.UsageResponse(size=usage.size, inodes=usage.inodes)

    async def Cleanup(self, request: api.CleanupRequest, context: Context) -> empty_pb2.Empty:
        sn = self._get(request.snapshotter)
        await sn.cleanup()
        return empty_pb2.Empty()
