"""Between the store's values and the Content API's messages (both directions)."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from api.containerd.services.content.v1 import content_pb2
from services.content.store import Info, NsTime, Status, ns_of

# Go's zero time.Time as gogo/protobuf puts it on the wire (0001-01-01T00:00:00Z).
GO_ZERO_SECONDS = -62135596800


def timestamp(dt: datetime) -> Timestamp:
    ts = Timestamp()
    ts.seconds, ts.nanos = divmod(ns_of(dt), 1_000_000_000)
    return ts


def from_timestamp(ts: Timestamp) -> datetime:
    return NsTime.of(ts.ToNanoseconds())


def info_to_proto(info: Info, *, updated: bool = True) -> content_pb2.Info:
    msg = content_pb2.Info(
        digest=info.digest,
        size=info.size,
        created_at=timestamp(info.created_at),
        labels=dict(info.labels),
    )
    if updated:
        msg.updated_at.CopyFrom(timestamp(info.updated_at))
    else:
        # containerd leaves the field unset in Go, which still travels as zero time.
        msg.updated_at.seconds = GO_ZERO_SECONDS
    return msg


def info_from_proto(msg: content_pb2.Info) -> Info:
    return Info(
        digest=msg.digest,
        size=msg.size,
        created_at=from_timestamp(msg.created_at),
        updated_at=from_timestamp(msg.updated_at),
        labels=dict(msg.labels),
    )


def status_to_proto(st: Status) -> content_pb2.Status:
    return content_pb2.Status(
        started_at=timestamp(st.started_at),
        updated_at=timestamp(st.updated_at),
        ref=st.ref,
        offset=st.offset,
        total=st.total,
        expected=st.expected,
    )


def status_from_proto(msg: content_pb2.Status) -> Status:
    return Status(
        ref=msg.ref,
        offset=msg.offset,
        total=msg.total,
        started_at=from_timestamp(msg.started_at),
        updated_at=from_timestamp(msg.updated_at),
        expected=msg.expected,
    )
