"""``containerd.services.content.v1.Content`` over any ContentStore.

Thin by design: validate at the edge, call the store, convert.  Typed errors
are not caught here; the harness's EdgeInterceptor turns them into status
codes.  The Write stream follows containerd's contentserver message for
message (services/content/contentserver/contentserver.go), quirks included:

- one response per request, whose fields accumulate across the stream
  (``total``, ``started_at`` and ``updated_at`` are set by STAT only and stay
  in later answers; ``offset`` and ``digest`` are refreshed every time);
- WRITE/COMMIT at offset 0 on a non-empty ingest restarts it from zero, a
  non-zero offset must equal the current one (OutOfRange otherwise);
- when the stream ends without error (after COMMIT, or the client closing
  its side) the last response is sent once more;
- Read answers carry offsets relative to the requested offset;
- a message naming an expected digest the store already holds is answered
  AlreadyExists and the ingest dropped, whatever bytes it has: that only says
  the blob exists, never that the bytes written are it.  A client that
  commits through a store like this one (the daemon's metadata layer) checks
  the digest of what it wrote itself before it believes an AlreadyExists.

Namespaces are ignored: a backend store has none, and containerd's proxy
client sends whatever namespace its caller had (or none, for GC).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import empty_pb2

from api import errdefs
from api.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from services.content.convert import info_from_proto, info_to_proto, status_to_proto, timestamp
from services.content.metrics import ContentMetrics
from services.content.store import READ_CHUNK, ContentStore, Writer
from services.content.validation import split_digest, validate_labels
from services.content.wire import WriteRequest, parse_write

log = logging.getLogger(__name__)

SERVICE_NAME = "containerd.services.content.v1.Content"
LIST_BATCH = 100

Context = grpc.aio.ServicerContext[Any, Any]
# A Write message: parsed whole, or by wire.parse_write (see add_to_server).
WriteMessage = content_pb2.WriteContentRequest | WriteRequest
STAT = content_pb2.STAT
WRITE = content_pb2.WRITE
COMMIT = content_pb2.COMMIT


def _check_digest(digest: str) -> None:
    try:
        split_digest(digest)
    except errdefs.InvalidArgument:
        # containerd's wording for Info/Update/Read/Delete
        raise errdefs.InvalidArgument(f'"{digest}" failed validation') from None


def _check_offset(offset: int, what: str) -> None:
    # containerd clamps or ignores negative offsets; a negative offset is a
    # client bug, so it is refused here (a documented deviation).
    if offset < 0:
        raise errdefs.InvalidArgument(f"{what} offset {offset} must not be negative")


class ContentServicer(content_pb2_grpc.ContentServicer):
    def __init__(self, store: ContentStore, metrics: ContentMetrics | None = None) -> None:
        self.store = store
        self.metrics = metrics

    async def Info(self, request: content_pb2.InfoRequest, context: Context) -> Any:
        _check_digest(request.digest)
        info = await self.store.info(request.digest)
        return content_pb2.InfoResponse(info=info_to_proto(info))

    async def Update(self, request: content_pb2.UpdateRequest, context: Context) -> Any:
        _check_digest(request.info.digest)
        # Label sizes are checked by the store on the merged result, as
        # containerd does: a big label the field paths leave out is no error.
        info = await self.store.update(
            info_from_proto(request.info), list(request.update_mask.paths)
        )
        return content_pb2.UpdateResponse(info=info_to_proto(info))

    async def List(
        self, request: content_pb2.ListContentRequest, context: Context
    ) -> AsyncIterator[content_pb2.ListContentResponse]:
        batch: list[content_pb2.Info] = []
        async for info in self.store.walk(list(request.filters)):
            # containerd's List leaves updated_at out of its answers.
            batch.append(info_to_proto(info, updated=False))
            if len(batch) >= LIST_BATCH:
                yield content_pb2.ListContentResponse(info=batch)
                batch = []
        if batch:
            yield content_pb2.ListContentResponse(info=batch)

    async def Delete(self, request: content_pb2.DeleteContentRequest, context: Context) -> Any:
        _check_digest(request.digest)
        log.debug("delete content %s", request.digest)
        await self.store.delete(request.digest)
        return empty_pb2.Empty()

    async def Read(
        self, request: content_pb2.ReadContentRequest, context: Context
    ) -> AsyncIterator[content_pb2.ReadContentResponse]:
        _check_digest(request.digest)
        _check_offset(request.offset, "read")
        reader = await self.store.reader(request.digest)
        async with reader:
            if request.offset > reader.size:
                raise errdefs.OutOfRange(f"read past object length {reader.size} bytes")
            sent = 0
            async for data in reader.chunks(request.offset, request.size, READ_CHUNK):
                yield content_pb2.ReadContentResponse(offset=sent, data=data)
                sent += len(data)
                if self.metrics is not None:
                    self.metrics.read.inc(len(data))

    async def Status(self, request: content_pb2.StatusRequest, context: Context) -> Any:
        try:
            st = await self.store.status(request.ref)
        except errdefs.ErrdefsError as e:
            # containerd prefixes the context here (errdefs.ToGRPCf).
            raise type(e)(f'could not get status for ref "{request.ref}": {e.message}') from None
        return content_pb2.StatusResponse(status=status_to_proto(st))

    async def ListStatuses(self, request: content_pb2.ListStatusesRequest, context: Context) -> Any:
        statuses = await self.store.list_statuses(list(request.filters))
        return content_pb2.ListStatusesResponse(statuses=[status_to_proto(s) for s in statuses])

    async def Abort(self, request: content_pb2.AbortRequest, context: Context) -> Any:
        await self.store.abort(request.ref)
        return empty_pb2.Empty()

    async def Write(
        self, request_iterator: AsyncIterator[WriteMessage], context: Context
    ) -> AsyncIterator[content_pb2.WriteContentResponse]:
        requests = aiter(request_iterator)
        req = await anext(requests, None)
        if req is None:
            return
        ref = req.ref
        if not ref:
            raise errdefs.InvalidArgument("first message must have a reference")
        if req.expected:
            split_digest(req.expected)
        writer = await self.store.writer(ref, req.total, req.expected)
        if self.metrics is not None:
            self.metrics.active_ingests.inc()
        msg = content_pb2.WriteContentResponse()
        try:
            async for resp in self._write_loop(writer, req, requests, msg):
                yield resp
        finally:
            if self.metrics is not None:
                self.metrics.active_ingests.dec()
            await writer.close()
        # The stream ended cleanly: containerd sends its last answer again.
        yield msg

    async def _write_loop(
        self,
        writer: Writer,
        req: WriteMessage,
        requests: AsyncIterator[WriteMessage],
        msg: content_pb2.WriteContentResponse,
    ) -> AsyncIterator[content_pb2.WriteContentResponse]:
        ref = writer.ref
        total = req.total
        expected = req.expected
        while True:
            msg.action = req.action
            ws = await writer.status()
            msg.offset = ws.offset
            if req.expected:
                split_digest(req.expected)
                expected = req.expected
                if await self._exists(expected):
                    await writer.close()
                    try:
                        await self.store.abort(ref)
                    except errdefs.ErrdefsError as e:
                        log.warning("ref %s: abort after existing blob failed: %s", ref, e)
                    raise errdefs.AlreadyExists(f"blob with expected digest {expected} exists")
            if req.total > 0:
                total = req.total

            if req.action == STAT:
                msg.digest = writer.digest()
                msg.started_at.CopyFrom(timestamp(ws.started_at))
                msg.updated_at.CopyFrom(timestamp(ws.updated_at))
                msg.total = total
            elif req.action in (WRITE, COMMIT):
                _check_offset(req.offset, "write")
                if req.offset > 0 and req.offset != ws.offset:
                    raise errdefs.OutOfRange(
                        f"write @{req.offset} must occur at current offset {ws.offset}"
                    )
                if req.offset == 0 and ws.offset > 0:
                    await writer.truncate(0)
                    msg.offset = 0
                data = req.data  # each access of a bytes field copies it
                if data:
                    n = await writer.write(data)
                    if self.metrics is not None:
                        self.metrics.written.inc(n)
                    if n != len(data):
                        raise errdefs.DataLoss(f"wrote {n} of {len(data)} bytes")
                    msg.offset += n
                if req.action == COMMIT:
                    labels = dict(req.labels) if req.labels else None
                    validate_labels(labels)
                    await writer.commit(total, expected, labels)
                msg.digest = writer.digest()
            # Any other action is answered with the offset alone, as containerd does.

            yield msg
            if req.action == COMMIT:
                return
            nxt = await anext(requests, None)
            if nxt is None:
                return
            req = nxt

    async def _exists(self, digest: str) -> bool:
        try:
            await self.store.info(digest)
        except errdefs.NotFound:
            return False
        return True


def add_to_server(servicer: content_pb2_grpc.ContentServicer, server: Any) -> None:
    """The generated ``add_ContentServicer_to_server``, but Write requests are
    parsed by ``wire.parse_write``: their data reaches the writer as a view of
    the message received, not as copies."""
    wire = _WireWrites(server)
    content_pb2_grpc.add_ContentServicer_to_server(servicer, wire)  # type: ignore[arg-type]
    if not wire.registered:  # generated code of another shape: nothing would be served
        raise RuntimeError("the generated Content registration passed no method handlers")


class _WireWrites:
    """The server as the generated registration sees it, with Write's request
    deserializer replaced."""

    def __init__(self, server: Any) -> None:
        self._server = server
        self.registered = False

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # made again from the same table below

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        write = handlers["Write"]
        handlers = {
            **handlers,
            "Write": grpc.stream_stream_rpc_method_handler(
                write.stream_stream,  # type: ignore[arg-type]
                request_deserializer=parse_write,
                response_serializer=write.response_serializer,
            ),
        }
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, handlers),)
        )
        self._server.add_registered_method_handlers(service, handlers)
        self.registered = True
