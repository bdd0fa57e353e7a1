"""containerd.services.content.v1.Content over the namespaced content store.

The wire behaviour (Write stream quirks, Read offsets, validation) is the
content plugin's servicer's (``services.content.servicer``), run per request
over the caller's namespace and lease; this layer adds the /content/delete
event containerd's services/content/store.go publishes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from api.containerd.events import content_pb2 as events
from api.containerd.services.content.v1 import content_pb2 as api
from api.containerd.services.content.v1 import content_pb2_grpc
from daemon.events.exchange import Publisher
from daemon.metadata.content import NamespacedContent, NamespaceView
from daemon.metadata.servicers.common import Context, lease, namespace, set_ts
from services.content.servicer import ContentServicer as PlainContentServicer

SERVICE_NAME = "containerd.services.content.v1.Content"


class ContentServicer(content_pb2_grpc.ContentServicer):
    def __init__(self, content: NamespacedContent, publisher: Publisher) -> None:
        self.content = content
        self.publisher = publisher

    def _plain(self, context: Context) -> PlainContentServicer:
        view = NamespaceView(self.content, namespace(context), lease(context))
        return PlainContentServicer(view)

    async def Info(self, request: api.InfoRequest, context: Context) -> Any:
        # The common case straight from the record; a digest with none here
        # takes the full path (validation, other nodes, NotFound).
        blob = await self.content.record(namespace(context), request.digest)
        if blob is None:
            return await self._plain(context).Info(request, context)
        resp = api.InfoResponse()
        info = resp.info
        info.digest = blob.digest
        info.size = blob.size
        if blob.labels:
            info.labels.update(blob.labels)
        set_ts(info.created_at, blob.created_at)
        set_ts(info.updated_at, blob.updated_at)
        return resp

    async def Update(self, request: api.UpdateRequest, context: Context) -> Any:
        return await self._plain(context).Update(request, context)

    async def List(
        self, request: api.ListContentRequest, context: Context
    ) -> AsyncIterator[api.ListContentResponse]:
        async for resp in self._plain(context).List(request, context):
            yield resp

    async def Delete(self, request: api.DeleteContentRequest, context: Context) -> Any:
        resp = await self._plain(context).Delete(request, context)
        await self.publisher.publish(
            namespace(context), events.ContentDelete(digest=request.digest)
        )
        return resp

    async def Read(
        self, request: api.ReadContentRequest, context: Context
    ) -> AsyncIterator[api.ReadContentResponse]:
        async for resp in self._plain(context).Read(request, context):
            yield resp

    async def Status(self, request: api.StatusRequest, context: Context) -> Any:
        return await self._plain(context).Status(request, context)

    async def ListStatuses(self, request: api.ListStatusesRequest, context: Context) -> Any:
        return await self._plain(context).ListStatuses(request, context)

    async def Abort(self, request: api.AbortRequest, context: Context) -> Any:
        return await self._plain(context).Abort(request, context)

    async def Write(
        self, request_iterator: AsyncIterator[api.WriteContentRequest], context: Context
    ) -> AsyncIterator[api.WriteContentResponse]:
        async for resp in self._plain(context).Write(request_iterator, context):
            yield resp
