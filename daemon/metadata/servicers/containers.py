"""containerd.services.containers.v1.Containers (services/containers/local.go)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence

from google.protobuf import empty_pb2

from api import errdefs
from api.containerd.events import container_pb2 as events
from api.containerd.services.containers.v1 import containers_pb2 as api
from api.containerd.services.containers.v1 import containers_pb2_grpc
from daemon.events.exchange import Publisher
from daemon.metadata import records
from daemon.metadata.containers import ContainerStore
from daemon.metadata.servicers.common import Context, any_bytes, namespace, set_ts

# Raises (e.g. FailedPrecondition while the container has a task) to refuse a delete.
DeleteGuard = Callable[[str, str], None]

SERVICE_NAME = "containerd.services.containers.v1.Containers"


def fill(out: api.Container, c: records.Container) -> api.Container:
    """Set ``out``'s fields from ``c`` (in place, as the images servicer does)."""
    out.id = c.id
    if c.labels:
        out.labels.update(c.labels)
    out.image = c.image
    out.runtime.name = c.runtime_name
    if c.runtime_options is not None:
        out.runtime.options.ParseFromString(c.runtime_options)
    if c.spec is not None:
        out.spec.ParseFromString(c.spec)
    out.snapshotter = c.snapshotter
    out.snapshot_key = c.snapshot_key
    set_ts(out.created_at, c.created_at)
    set_ts(out.updated_at, c.updated_at)
    out.sandbox = c.sandbox
    for k, v in c.extensions.items():
        out.extensions[k].ParseFromString(v)
    return out


def to_proto(c: records.Container) -> api.Container:
    return fill(api.Container(), c)


def from_proto(ns: str, c: api.Container) -> records.Container:
    return records.Container(
        namespace=ns,
        id=c.id,
        runtime_name=c.runtime.name,
        runtime_options=any_bytes(c.runtime, "options"),
        spec=any_bytes(c, "spec"),
        labels=dict(c.labels),
        image=c.image,
        snapshotter=c.snapshotter,
        snapshot_key=c.snapshot_key,
        extensions={k: v.SerializeToString(deterministic=True) for k, v in c.extensions.items()},
        sandbox=c.sandbox,
    )


class ContainersServicer(containers_pb2_grpc.ContainersServicer):
    def __init__(
        self,
        store: ContainerStore,
        publisher: Publisher,
        delete_guards: Sequence[DeleteGuard] = (),
    ) -> None:
        self.store = store
        self.publisher = publisher
        # Live list: plugins loaded after the metadata layer (tasks) add theirs.
        self.delete_guards = delete_guards

    async def Get(
        self, request: api.GetContainerRequest, context: Context
    ) -> api.GetContainerResponse:
        c = await self.store.get(namespace(context), request.id)
        resp = api.GetContainerResponse()
        fill(resp.container, c)  # in place: no copy of a built message
        return resp

    async def List(
        self, request: api.ListContainersRequest, context: Context
    ) -> api.ListContainersResponse:
        found = await self.store.list(namespace(context), list(request.filters))
        resp = api.ListContainersResponse()
        add = resp.containers.add
        for c in found:
            fill(add(), c)
        return resp

    async def ListStream(
        self, request: api.ListContainersRequest, context: Context
    ) -> AsyncIterator[api.ListContainerMessage]:
        found = await self.store.list(namespace(context), list(request.filters))
        for c in found:
            yield api.ListContainerMessage(container=to_proto(c))

    async def Create(
        self, request: api.CreateContainerRequest, context: Context
    ) -> api.CreateContainerResponse:
        ns = namespace(context)
        created = to_proto(await self.store.create(from_proto(ns, request.container)))
        event = events.ContainerCreate(
            id=created.id,
            image=created.image,
            runtime=events.ContainerCreate.Runtime(
                name=created.runtime.name,
                options=created.runtime.options if created.runtime.HasField("options") else None,
            ),
        )
        await self.publisher.publish(ns, event)
        return api.CreateContainerResponse(container=created)

    async def Update(
        self, request: api.UpdateContainerRequest, context: Context
    ) -> api.UpdateContainerResponse:
        if not request.container.id:
            raise errdefs.InvalidArgument("Container.ID required")
        ns = namespace(context)
        paths = list(request.update_mask.paths) if request.HasField("update_mask") else []
        updated = to_proto(await self.store.update(from_proto(ns, request.container), paths))
        await self.publisher.publish(
            ns,
            events.ContainerUpdate(
                id=updated.id,
                image=updated.image,
                labels=dict(updated.labels),
                snapshot_key=updated.snapshot_key,
            ),
        )
        return api.UpdateContainerResponse(container=updated)

    async def Delete(
        self, request: api.DeleteContainerRequest, context: Context
    ) -> empty_pb2.Empty:
        ns = namespace(context)
        for guard in self.delete_guards:
            guard(ns, request.id)
        await self.store.delete(ns, request.id)
        await self.publisher.publish(ns, events.ContainerDelete(id=request.id))
        return empty_pb2.Empty()
