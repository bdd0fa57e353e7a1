"""A differ over a gRPC channel: the Applier and Comparer contracts, remotely.

Talks to any ``containerd.services.diff.v1.Diff`` server - this plugin,
the daemon, or containerd itself - so the conformance suite drives them all
through one interface.  Status codes become typed errors here (UNIMPLEMENTED
is errdefs.NotImplemented: try the next differ).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import datetime

import grpc
from google.protobuf import any_pb2

from api import errgrpc
from api.containerd.services.diff.v1 import diff_pb2, diff_pb2_grpc
from api.containerd.types import descriptor_pb2, mount_pb2
from services.diff.differ import Descriptor, Mount

Metadata = tuple[tuple[str, str], ...]


def _mounts(mounts: Sequence[Mount]) -> list[mount_pb2.Mount]:
    return [
        mount_pb2.Mount(type=m.type, source=m.source, target=m.target, options=list(m.options))
        for m in mounts
    ]


def _descriptor(d: descriptor_pb2.Descriptor) -> Descriptor:
    return Descriptor(d.media_type, d.digest, d.size, dict(d.annotations))


class ProxyDiffer:
    """``ProxyDiffer(channel, metadata=(("containerd-namespace", "default"),))``."""

    def __init__(
        self, channel: grpc.aio.Channel, *, metadata: Metadata = (), name: str = "proxy differ"
    ) -> None:
        self._stub = diff_pb2_grpc.DiffStub(channel)
        self._metadata = metadata
        self._name = name

    def scoped(self, metadata: Metadata) -> ProxyDiffer:
        """The same differ, sending ``metadata`` (a caller's namespace and lease) instead."""
        clone = copy.copy(self)
        clone._metadata = metadata
        return clone

    async def apply(
        self,
        desc: Descriptor,
        mounts: Sequence[Mount],
        payloads: Mapping[str, bytes] | None = None,
        *,
        sync_fs: bool = False,
    ) -> Descriptor:
        req = diff_pb2.ApplyRequest(
            diff=descriptor_pb2.Descriptor(
                media_type=desc.media_type,
                digest=desc.digest,
                size=desc.size,
                annotations=dict(desc.annotations),
            ),
            mounts=_mounts(mounts),
            sync_fs=sync_fs,
        )
        for key, value in (payloads or {}).items():
            payload = any_pb2.Any()
            payload.ParseFromString(value)
            req.payloads[key].CopyFrom(payload)
        with errgrpc.translate(self._name):
            resp = await self._stub.Apply(req, metadata=self._metadata)
        return _descriptor(resp.applied)

    async def compare(
        self,
        lower: Sequence[Mount],
        upper: Sequence[Mount],
        media_type: str = "",
        ref: str = "",
        labels: Mapping[str, str] | None = None,
        *,
        source_date_epoch: datetime | None = None,
    ) -> Descriptor:
        req = diff_pb2.DiffRequest(
            left=_mounts(lower),
            right=_mounts(upper),
            media_type=media_type,
            ref=ref,
            labels=dict(labels or {}),
        )
        if source_date_epoch is not None:
            req.source_date_epoch.FromDatetime(source_date_epoch)
        with errgrpc.translate(self._name):
            resp = await self._stub.Diff(req, metadata=self._metadata)
        return _descriptor(resp.diff)
