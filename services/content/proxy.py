"""A ContentStore over a gRPC channel (containerd's ``content/proxy``).

The daemon uses it for ``[proxy_plugins]`` of type content; the conformance
suite and the benchmark use it as their client.  Status codes become typed
errors here and nowhere else on the client side.

The writer is one Write stream: every operation is a request answered by one
response, like containerd's remoteWriter, except that ``write`` pipelines the
chunks of a large buffer (all requests first, then all answers) so a round
trip is not paid per chunk, and that ``start_writer`` opens a new ingest
without waiting for the answer (it is read before the next one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import grpc
from google.protobuf import field_mask_pb2

from api import errdefs, errgrpc, namespaces
from api.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from services.content.convert import (
    from_timestamp,
    info_from_proto,
    info_to_proto,
    status_from_proto,
)
from services.content.store import READ_CHUNK, Data, Info, ReaderAt, Status
from services.content.wire import encode_write, serialize_request

log = logging.getLogger(__name__)

# Data per Write message; 16 MiB is the message limit on every channel.
WRITE_CHUNK = 1 << 20

# grpc-aio gives a call whose message could not be sent (the server had
# already ended the stream, say on a full disk) the status INTERNAL "Internal
# error from Core", whether or not the server's own status came first: that
# one is overwritten, or overwrites grpc's a moment later.  So a writer keeps
# the first status its call takes and, when that is grpc's, waits (at most
# STATUS_WAIT seconds) for the server's.
_CORE_INTERNAL = "Internal error from Core"
STATUS_WAIT = 5.0

Metadata = tuple[tuple[str, str], ...]
T = TypeVar("T")

# Writers closing after their commit (held here until done).
_closing: set[asyncio.Future[None]] = set()


class ProxyContentStore:
    """``ProxyContentStore(channel)``.

    ``namespace`` (if any) and ``metadata`` (e.g. a ``containerd-lease``
    header) are sent on every call.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        namespace: str | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        name: str = "proxy content store",
    ) -> None:
        self._stub = content_pb2_grpc.ContentStub(channel)
        # Write takes requests serialised already (wire.encode_write) as they are.
        self._write = channel.stream_stream(
            "/containerd.services.content.v1.Content/Write",
            request_serializer=serialize_request,
            response_deserializer=content_pb2.WriteContentResponse.FromString,
        )
        ns_md = namespaces.outgoing(namespace) if namespace else ()
        self._md: Metadata = (*ns_md, *metadata)
        self._name = name

    @property
    def up(self) -> bool:
        """Whether the server is thought to answer (a daemon's proxy plugin
        knows; a plain channel is taken to)."""
        return True

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        with errgrpc.translate(self._name):
            yield

    async def info(self, digest: str) -> Info:
        with self._translate():
            resp = await self._stub.Info(content_pb2.InfoRequest(digest=digest), metadata=self._md)
        return info_from_proto(resp.info)

    async def update(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        req = content_pb2.UpdateRequest(
            info=info_to_proto(info), update_mask=field_mask_pb2.FieldMask(paths=fieldpaths)
        )
        with self._translate():
            resp = await self._stub.Update(req, metadata=self._md)
        return info_from_proto(resp.info)

    async def walk(self, filters: Sequence[str] = ()) -> AsyncIterator[Info]:
        call = self._stub.List(content_pb2.ListContentRequest(filters=filters), metadata=self._md)
        try:
            with self._translate():
                async for resp in call:
                    for info in resp.info:
                        yield info_from_proto(info)
        finally:
            call.cancel()

    async def delete(self, digest: str) -> None:
        with self._translate():
            await self._stub.Delete(
                content_pb2.DeleteContentRequest(digest=digest), metadata=self._md
            )

    async def reader(self, digest: str) -> ProxyReader:
        info = await self.info(digest)
        return ProxyReader(self, digest, info.size)

    async def status(self, ref: str) -> Status:
        with self._translate():
            resp = await self._stub.Status(content_pb2.StatusRequest(ref=ref), metadata=self._md)
        return status_from_proto(resp.status)

    async def list_statuses(self, filters: Sequence[str] = ()) -> list[Status]:
        with self._translate():
            resp = await self._stub.ListStatuses(
                content_pb2.ListStatusesRequest(filters=filters), metadata=self._md
            )
        return [status_from_proto(s) for s in resp.statuses]

    async def writer(self, ref: str, total: int = 0, expected: str = "") -> ProxyWriter:
        writer = await self.start_writer(ref, total, expected)
        try:
            await writer.answered()
        except BaseException:
            writer._call.cancel()
            raise
        return writer

    async def start_writer(self, ref: str, total: int = 0, expected: str = "") -> ProxyWriter:
        """A writer of ``ref`` whose opening is sent, not yet answered: for a
        new ingest, whose first write may follow at once.  The server's
        answer (or error) is taken with the next operation's."""
        call = self._write(metadata=self._md)
        writer = ProxyWriter(self, ref, call)
        try:
            await writer._send(
                content_pb2.WriteContentRequest(
                    action=content_pb2.STAT, ref=ref, total=total, expected=expected
                )
            )
        except BaseException:
            call.cancel()
            raise
        writer._unanswered = 1
        return writer

    async def abort(self, ref: str) -> None:
        with self._translate():
            await self._stub.Abort(content_pb2.AbortRequest(ref=ref), metadata=self._md)

    async def _read(self, digest: str, offset: int, size: int) -> AsyncIterator[bytes]:
        call = self._stub.Read(
            content_pb2.ReadContentRequest(digest=digest, offset=offset, size=size),
            metadata=self._md,
        )
        try:
            with self._translate():
                async for resp in call:
                    yield resp.data
        finally:
            call.cancel()


class ProxyReader(ReaderAt):
    def __init__(self, store: ProxyContentStore, digest: str, size: int) -> None:
        self._store = store
        self._digest = digest
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    async def read_at(self, offset: int, n: int) -> bytes:
        if n <= 0:
            return b""
        parts = [data async for data in self._store._read(self._digest, offset, n)]
        return b"".join(parts)

    async def chunks(
        self, offset: int = 0, size: int = 0, chunk: int = READ_CHUNK
    ) -> AsyncIterator[bytes]:
        # The server chooses the chunk size (1 MiB for ours and containerd's).
        async for data in self._store._read(self._digest, offset, size):
            yield data

    async def close(self) -> None:
        return None


class ProxyWriter:
    """One Write stream; create it with ``ProxyContentStore.writer``."""

    def __init__(self, store: ProxyContentStore, ref: str, call: Any) -> None:
        self._store = store
        self._ref = ref
        self._call: grpc.aio.StreamStreamCall[
            content_pb2.WriteContentRequest | bytes, content_pb2.WriteContentResponse
        ] = call
        self._offset = 0
        self._digest = ""
        self._closed = False
        # Requests sent whose answers are still to be read (start_writer's),
        # and the lock that keeps answers read in order by one reader.
        self._unanswered = 0
        self._reading = asyncio.Lock()
        # The first status the call took (see _CORE_INTERNAL).
        self._first_status: tuple[grpc.StatusCode, str] | None = None
        call.add_done_callback(self._on_status)

    def _on_status(self, call: Any) -> None:
        if self._first_status is None:
            self._first_status = _status_now(call)

    @property
    def ref(self) -> str:
        return self._ref

    @property
    def offset(self) -> int:
        return self._offset

    def digest(self) -> str:
        return self._digest

    async def _send(self, req: content_pb2.WriteContentRequest | bytes) -> None:
        if self._closed:
            raise errdefs.FailedPrecondition("writer is closed")
        try:
            await self._call.write(req)
        except asyncio.InvalidStateError:
            # The server already ended the stream: its status is the error.
            await self._raise_status()
        except grpc.RpcError as e:
            if _masked(e):
                await self._raise_status()
            raise errgrpc.from_rpc_error(e) from None

    async def _recv(self) -> content_pb2.WriteContentResponse:
        async with self._reading:
            await self._read_unanswered()
            return await self._recv_one()

    async def answered(self) -> None:
        """Return once the server has answered the opening ``start_writer``
        sent (it holds the ingest then, at the offset it answered); raises
        the server's error."""
        async with self._reading:
            await self._read_unanswered()

    async def _read_unanswered(self) -> None:
        while self._unanswered:
            self._unanswered -= 1
            self._offset = (await self._recv_one()).offset

    async def _recv_one(self) -> content_pb2.WriteContentResponse:
        with self._store._translate():
            try:
                resp = await self._call.read()
            except grpc.RpcError as e:
                if not _masked(e):
                    raise
                resp = grpc.aio.EOF  # the server's status follows
        if resp is grpc.aio.EOF:
            await self._raise_status()
        assert isinstance(resp, content_pb2.WriteContentResponse)
        if resp.digest:
            self._digest = resp.digest
        return resp

    async def _raise_status(self) -> None:
        code, details = await self._server_status()
        if code == grpc.StatusCode.OK:
            raise errdefs.Unknown("write stream ended early")
        raise errgrpc.from_status(code, details)

    async def _server_status(self) -> tuple[grpc.StatusCode, str]:
        """The call's final status: the server's, when grpc-core's own
        (``_CORE_INTERNAL``) is in its place."""
        status = (await self._call.code(), await self._call.details() or "")
        if not _is_core_internal(*status):
            return status
        if self._first_status is not None and not _is_core_internal(*self._first_status):
            return self._first_status
        # grpc's came first: the server's replaces it when it arrives.
        try:
            async with asyncio.timeout(STATUS_WAIT):
                while _is_core_internal(*status):
                    await asyncio.sleep(0.005)
                    status = (await self._call.code(), await self._call.details() or "")
        except TimeoutError:
            log.debug("ref %s: no status from the server after grpc-core's own", self._ref)
        return status

    async def _roundtrip(
        self, req: content_pb2.WriteContentRequest | bytes
    ) -> content_pb2.WriteContentResponse:
        await self._send(req)
        return await self._recv()

    async def status(self) -> Status:
        resp = await self._roundtrip(content_pb2.WriteContentRequest(action=content_pb2.STAT))
        return Status(
            ref=self._ref,
            offset=resp.offset,
            total=resp.total,
            started_at=from_timestamp(resp.started_at),
            updated_at=from_timestamp(resp.updated_at),
        )

    async def write(self, data: Data) -> int:
        start = self._offset
        if len(data) <= WRITE_CHUNK:
            # One message, laid out with one copy of the data; no sender of its own.
            if not data:
                return 0
            resp = await self._roundtrip(encode_write(start, data))
        else:
            resp = await self._pipelined(start, data)
        written = resp.offset - start
        self._offset = resp.offset
        if written < len(data):
            raise errdefs.DataLoss(f"short write: {written} of {len(data)} bytes")
        return written

    async def _pipelined(self, start: int, data: Data) -> content_pb2.WriteContentResponse:
        """Send ``data`` in WRITE_CHUNK messages, all before their answers."""
        view = memoryview(data)
        chunks = [view[i : i + WRITE_CHUNK] for i in range(0, len(view), WRITE_CHUNK)]

        async def send_all() -> None:
            offset = start
            for chunk in chunks:
                await self._send(encode_write(offset, chunk))
                offset += len(chunk)

        sender = asyncio.ensure_future(send_all())
        try:
            for _ in chunks:
                resp = await self._recv()
            await sender
        finally:
            if not sender.done():
                sender.cancel()
            # The first error (usually the answer's) is the one that counts.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
        return resp

    async def truncate(self, size: int) -> None:
        # As containerd's client: takes effect with the next WRITE or COMMIT,
        # which the server sees at offset 0 and restarts the ingest.
        if size != 0:
            raise errdefs.InvalidArgument(f"truncate to {size}: only 0 is supported")
        self._offset = size

    async def commit(
        self, size: int = 0, expected: str = "", labels: Mapping[str, str] | None = None
    ) -> str:
        try:
            resp = await self._roundtrip(
                content_pb2.WriteContentRequest(
                    action=content_pb2.COMMIT,
                    total=size,
                    offset=self._offset,
                    expected=expected,
                    labels=dict(labels or {}),
                )
            )
        except BaseException:
            await self.close()
            raise
        # Committed: the stream's end is the server's business now, and the
        # caller need not wait for it.
        _closing.add(task := asyncio.ensure_future(self.close()))
        task.add_done_callback(_closed)
        if size and resp.offset != size:
            raise errdefs.FailedPrecondition(f"unexpected size: {resp.offset} != {size}")
        if expected and resp.digest != expected:
            raise errdefs.FailedPrecondition(f"unexpected digest: {resp.digest} != {expected}")
        self._offset = resp.offset
        return resp.digest

    async def close(self) -> None:
        """Half-close the stream and let the server finish; the ingest stays."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._call.done_writing()
            # The server repeats its last answer before it ends a stream.
            while await self._call.read() is not grpc.aio.EOF:
                pass
        except (grpc.RpcError, asyncio.InvalidStateError) as e:
            log.debug("ref %s: write stream ended with %s", self._ref, e)
        finally:
            self._call.cancel()


def _closed(task: asyncio.Future[None]) -> None:
    _closing.discard(task)
    if not task.cancelled() and (e := task.exception()) is not None:
        log.debug("closing a write stream after its commit: %s", e)


def _is_core_internal(code: grpc.StatusCode | None, details: str | None) -> bool:
    return code == grpc.StatusCode.INTERNAL and details == _CORE_INTERNAL


def _masked(e: grpc.RpcError) -> bool:
    """``e`` is grpc-core's own INTERNAL for a message it could not send."""
    code = e.code() if hasattr(e, "code") else None
    details = e.details() if hasattr(e, "details") else None
    return _is_core_internal(code, details)


def _status_now(call: Any) -> tuple[grpc.StatusCode, str] | None:
    """A finished call's status, read at once (from a done callback, before
    anything can replace it); None when it cannot be had without waiting."""
    code = _result_now(call.code())
    details = _result_now(call.details())
    if code is None:
        return None
    return code, details or ""


def _result_now(coro: Coroutine[Any, Any, T]) -> T | None:
    """The result of ``coro`` if it finishes without suspending (grpc-aio's
    status getters do once the call is done); None otherwise."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return cast(T, stop.value)
    coro.close()
    return None


if TYPE_CHECKING:
    from services.content.store import ContentStore

    def _conforms(store: ProxyContentStore) -> ContentStore:
        return store
