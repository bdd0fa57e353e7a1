"""``containerd.services.diff.v1.Diff`` over a differ bound to each request.

Thin like containerd's service (v1.6.20:services/diff/local.go, service.go):
convert, call the differ, convert back.  Typed errors pass through to the
harness's EdgeInterceptor; errdefs.NotImplemented for a media type this
differ does not handle reaches the caller as UNIMPLEMENTED, so a daemon
with several differs tries the next one.

Every call needs a namespace (the differ reads and writes content in it);
the request's namespace and lease headers travel on to the content store.
Unlike containerd, the mounts of a request must lie under the roots this
differ serves (``services.diff.allowed``): PermissionDenied otherwise.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC
from typing import Any, Protocol

import grpc

from api import errdefs, namespaces
from api.containerd.services.diff.v1 import diff_pb2, diff_pb2_grpc
from api.containerd.types import descriptor_pb2, mount_pb2
from services.content.validation import split_digest
from services.diff.allowed import MountGuard
from services.diff.content import Metadata, forwarded
from services.diff.differ import Applier, Comparer, Descriptor, Mount
from services.diff.metrics import DiffMetrics

log = logging.getLogger(__name__)

SERVICE_NAME = "containerd.services.diff.v1.Diff"

Context = grpc.aio.ServicerContext[Any, Any]


class Differ(Applier, Comparer, Protocol):
    pass


DifferFactory = Callable[[Metadata], Differ]


def _mounts(mounts: Sequence[mount_pb2.Mount]) -> list[Mount]:
    return [Mount(m.type, m.source, tuple(m.options), m.target) for m in mounts]


def _descriptor(d: Descriptor) -> descriptor_pb2.Descriptor:
    return descriptor_pb2.Descriptor(
        media_type=d.media_type, digest=d.digest, size=d.size, annotations=dict(d.annotations)
    )


def _check_digest(digest: str) -> None:
    try:
        split_digest(digest)
    except errdefs.InvalidArgument as e:
        raise errdefs.InvalidArgument(f"diff.digest: {e.message}") from None


class DiffServicer(diff_pb2_grpc.DiffServicer):
    """``differ_for(metadata)`` builds the differ for one request's outgoing headers;
    ``guard`` decides which mounts it may be given.  Without one, mounts pass
    as they came: only for a servicer in front of differs in other processes
    that guard their own roots (the daemon's diff service), where a pinned
    ``/proc/self/fd`` path would mean nothing."""

    def __init__(
        self,
        differ_for: DifferFactory,
        metrics: DiffMetrics | None = None,
        *,
        guard: MountGuard | None = None,
    ) -> None:
        self._differ_for = differ_for
        self._metrics = metrics
        self._guard = guard

    def _differ(self, context: Context) -> tuple[str, Differ]:
        metadata = context.invocation_metadata()
        namespace = namespaces.required(metadata)
        return namespace, self._differ_for(forwarded(metadata))

    def _pinned(
        self, mounts: Sequence[mount_pb2.Mount]
    ) -> contextlib.AbstractAsyncContextManager[list[Mount]]:
        if self._guard is None:
            return contextlib.nullcontext(_mounts(mounts))
        return self._guard.pinned(_mounts(mounts))

    def _tracking(self, operation: str) -> contextlib.AbstractContextManager[Any]:
        if self._metrics is None:
            return contextlib.nullcontext()
        return self._metrics.in_flight.labels(operation).track_inprogress()

    async def Apply(self, request: diff_pb2.ApplyRequest, context: Context) -> Any:
        namespace, differ = self._differ(context)
        if not request.HasField("diff") or not request.diff.digest:
            raise errdefs.InvalidArgument("diff: a layer descriptor is required")
        _check_digest(request.diff.digest)
        desc = Descriptor(
            request.diff.media_type,
            request.diff.digest,
            request.diff.size,
            dict(request.diff.annotations),
        )
        payloads = {k: v.SerializeToString() for k, v in request.payloads.items()}
        with self._tracking("apply"):
            try:
                async with self._pinned(request.mounts) as mounts:
                    applied = await differ.apply(desc, mounts, payloads, sync_fs=request.sync_fs)
            except errdefs.ErrdefsError as e:
                log.info(
                    "apply %s (%s) in namespace %s: %s", desc.digest, desc.media_type, namespace, e
                )
                raise
        return diff_pb2.ApplyResponse(applied=_descriptor(applied))

    async def Diff(self, request: diff_pb2.DiffRequest, context: Context) -> Any:
        namespace, differ = self._differ(context)
        epoch = None
        if request.HasField("source_date_epoch"):
            epoch = request.source_date_epoch.ToDatetime(tzinfo=UTC)
        with self._tracking("diff"):
            try:
                async with (
                    self._pinned(request.left) as left,
                    self._pinned(request.right) as right,
                ):
                    desc = await differ.compare(
                        left,
                        right,
                        request.media_type,
                        request.ref,
                        dict(request.labels),
                        source_date_epoch=epoch,
                    )
            except errdefs.ErrdefsError as e:
                log.info("diff (%s) in namespace %s: %s", request.media_type, namespace, e)
                raise
        return diff_pb2.DiffResponse(diff=_descriptor(desc))
