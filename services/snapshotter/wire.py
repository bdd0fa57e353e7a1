"""Conversions between the contract's value types and the wire messages.

Shared by the servicer and the proxy client so both ends agree, including
containerd's quirk that any kind other than active or view reads as
committed (services/snapshots/service.go ``toKind``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC

from google.protobuf import timestamp_pb2

from api.containerd.services.snapshots.v1 import snapshots_pb2
from api.containerd.types import mount_pb2
from services.snapshotter.snapshotter import Info, Kind, Mount, Usage


def kind_from_wire(kind: int) -> Kind:
    if kind == snapshots_pb2.ACTIVE:
        return Kind.ACTIVE
    if kind == snapshots_pb2.VIEW:
        return Kind.VIEW
    return Kind.COMMITTED


def kind_to_wire(kind: Kind) -> snapshots_pb2.Kind.ValueType:
    if kind == Kind.ACTIVE:
        return snapshots_pb2.ACTIVE
    if kind == Kind.VIEW:
        return snapshots_pb2.VIEW
    return snapshots_pb2.COMMITTED


def info_to_wire(info: Info) -> snapshots_pb2.Info:
    created = timestamp_pb2.Timestamp()
    created.FromDatetime(info.created)
    updated = timestamp_pb2.Timestamp()
    updated.FromDatetime(info.updated)
    return snapshots_pb2.Info(
        name=info.name,
        parent=info.parent,
        kind=kind_to_wire(info.kind),
        created_at=created,
        updated_at=updated,
        labels=dict(info.labels),
    )


def info_from_wire(msg: snapshots_pb2.Info) -> Info:
    return Info(
        name=msg.name,
        parent=msg.parent,
        kind=kind_from_wire(msg.kind),
        labels=dict(msg.labels),
        created=msg.created_at.ToDatetime(tzinfo=UTC),
        updated=msg.updated_at.ToDatetime(tzinfo=UTC),
    )


def mounts_to_wire(mounts: Iterable[Mount]) -> list[mount_pb2.Mount]:
    return [
        mount_pb2.Mount(type=m.type, source=m.source, target=m.target, options=list(m.options))
        for m in mounts
    ]


def mounts_from_wire(mounts: Iterable[mount_pb2.Mount]) -> list[Mount]:
    return [
        Mount(type=m.type, source=m.source, target=m.target, options=tuple(m.options))
        for m in mounts
    ]


def usage_to_wire(usage: Usage) -> snapshots_pb2.UsageResponse:
    return snapshots_pb2.UsageResponse(size=usage.size, inodes=usage.inodes)


def usage_from_wire(msg: snapshots_pb2.UsageResponse) -> Usage:
    return Usage(size=msg.size, inodes=msg.inodes)


def labels_or_none(labels: Mapping[str, str]) -> dict[str, str] | None:
    """A request's label map; proto3 cannot tell "none" from "empty", Go reads both as none."""
    return dict(labels) if labels else None
