"""containerd.services.leases.v1.Leases (services/leases)."""

from __future__ import annotations

from google.protobuf import empty_pb2

from api.containerd.services.leases.v1 import leases_pb2 as api
from api.containerd.services.leases.v1 import leases_pb2_grpc
from daemon.metadata import records
from daemon.metadata.leases import LeaseManager, random_id
from daemon.metadata.servicers.common import Context, GCWaiter, namespace, ts

SERVICE_NAME = "containerd.services.leases.v1.Leases"


def to_proto(lease: records.Lease) -> api.Lease:
    return api.Lease(id=lease.id, labels=dict(lease.labels), created_at=ts(lease.created_at))


class LeasesServicer(leases_pb2_grpc.LeasesServicer):
    def __init__(self, manager: LeaseManager, gc: GCWaiter) -> None:
        self.manager = manager
        self.gc = gc

    async def Create(self, request: api.CreateRequest, context: Context) -> api.CreateResponse:
        lease = await self.manager.create(
            namespace(context), request.id or random_id(), dict(request.labels)
        )
        return api.CreateResponse(lease=to_proto(lease))

    async def Delete(self, request: api.DeleteRequest, context: Context) -> empty_pb2.Empty:
        await self.manager.delete(namespace(context), request.id)
        if request.sync:
            await self.gc.schedule_and_wait()
        return empty_pb2.Empty()

    async def List(self, request: api.ListRequest, context: Context) -> api.ListResponse:
        found = await self.manager.list(namespace(context), list(request.filters))
        return api.ListResponse(leases=[to_proto(lease) for lease in found])

    async def AddResource(
        self, request: api.AddResourceRequest, context: Context
    ) -> empty_pb2.Empty:
        r = request.resource
        await self.manager.add_resource(namespace(context), request.id, r.type, r.id)
        return empty_pb2.Empty()

    async def DeleteResource(
        self, request: api.DeleteResourceRequest, context: Context
    ) -> empty_pb2.Empty:
        r = request.resource
        await self.manager.delete_resource(namespace(context), request.id, r.type, r.id)
        return empty_pb2.Empty()

    async def ListResources(
        self, request: api.ListResourcesRequest, context: Context
    ) -> api.ListResourcesResponse:
        found = await self.manager.list_resources(namespace(context), request.id)
        return api.ListResourcesResponse(
            resources=[api.Resource(id=r.id, type=r.type) for r in found]
        )
