"""containerd.services.images.v1.Images (services/images/local.go)."""

from __future__ import annotations

from google.protobuf import empty_pb2

from api import errdefs
from api.containerd.events import image_pb2 as events
from api.containerd.services.images.v1 import images_pb2 as api
from api.containerd.services.images.v1 import images_pb2_grpc
from daemon.events.exchange import Publisher
from daemon.metadata import records
from daemon.metadata.images import ImageStore
from daemon.metadata.servicers.common import Context, GCWaiter, namespace, set_ts

SERVICE_NAME = "containerd.services.images.v1.Images"


def fill(out: api.Image, img: records.Image) -> api.Image:
    """Set ``out``'s fields from ``img`` (in place: a List fills thousands,
    and building each from keyword arguments costs three times as much)."""
    out.name = img.name
    if img.labels:
        out.labels.update(img.labels)
    t, d = out.target, img.target
    t.media_type = d.media_type
    t.digest = d.digest
    t.size = d.size
    if d.annotations:
        t.annotations.update(d.annotations)
    set_ts(out.created_at, img.created_at)
    set_ts(out.updated_at, img.updated_at)
    return out


def to_proto(img: records.Image) -> api.Image:
    return fill(api.Image(), img)


def from_proto(ns: str, img: api.Image) -> records.Image:
    t = img.target
    return records.Image(
        namespace=ns,
        name=img.name,
        target=records.Descriptor(t.media_type, t.digest, t.size, dict(t.annotations)),
        labels=dict(img.labels),
    )


class ImagesServicer(images_pb2_grpc.ImagesServicer):
    def __init__(self, store: ImageStore, publisher: Publisher, gc: GCWaiter) -> None:
        self.store = store
        self.publisher = publisher
        self.gc = gc

    async def Get(self, request: api.GetImageRequest, context: Context) -> api.GetImageResponse:
        img = await self.store.get(namespace(context), request.name)
        resp = api.GetImageResponse()
        fill(resp.image, img)  # in place: no copy of a built message
        return resp

    async def List(
        self, request: api.ListImagesRequest, context: Context
    ) -> api.ListImagesResponse:
        found = await self.store.list(namespace(context), list(request.filters))
        resp = api.ListImagesResponse()
        add = resp.images.add
        for img in found:
            fill(add(), img)
        return resp

    async def Create(
        self, request: api.CreateImageRequest, context: Context
    ) -> api.CreateImageResponse:
        if not request.image.name:
            raise errdefs.InvalidArgument("Image.Name required")
        ns = namespace(context)
        created = to_proto(await self.store.create(from_proto(ns, request.image)))
        await self.publisher.publish(
            ns, events.ImageCreate(name=created.name, labels=dict(created.labels))
        )
        return api.CreateImageResponse(image=created)

    async def Update(
        self, request: api.UpdateImageRequest, context: Context
    ) -> api.UpdateImageResponse:
        if not request.image.name:
            raise errdefs.InvalidArgument("Image.Name required")
        ns = namespace(context)
        paths = list(request.update_mask.paths) if request.HasField("update_mask") else []
        updated = to_proto(await self.store.update(from_proto(ns, request.image), paths))
        await self.publisher.publish(
            ns, events.ImageUpdate(name=updated.name, labels=dict(updated.labels))
        )
        return api.UpdateImageResponse(image=updated)

    async def Delete(self, request: api.DeleteImageRequest, context: Context) -> empty_pb2.Empty:
        ns = namespace(context)
        target = request.target.digest if request.HasField("target") else ""
        await self.store.delete(ns, request.name, target)
        await self.publisher.publish(ns, events.ImageDelete(name=request.name))
        if request.sync:
            await self.gc.schedule_and_wait()
        return empty_pb2.Empty()
