"""What every metadata servicer shares: request context, conversions, GC waits."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

import grpc
from google.protobuf import any_pb2, timestamp_pb2

from api import namespaces
from daemon.metadata.leases import lease_from_metadata

Context = grpc.aio.ServicerContext[Any, Any]


class GCWaiter(Protocol):
    async def schedule_and_wait(self) -> object:
        """Collect garbage now and return when done; raises when it failed."""
        ...


def namespace(context: Context) -> str:
    """The request's namespace; FailedPrecondition when it has none."""
    return namespaces.required(context.invocation_metadata())


def lease(context: Context) -> str:
    return lease_from_metadata(context.invocation_metadata())


def ts(ns: int) -> timestamp_pb2.Timestamp:
    seconds, nanos = divmod(ns, 1_000_000_000)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


def set_ts(out: timestamp_pb2.Timestamp, ns: int) -> None:
    out.seconds, out.nanos = divmod(ns, 1_000_000_000)


def ts_dt(dt: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(dt)
    return out


def any_bytes(msg: Any, field: str) -> bytes | None:
    """A message's ``Any`` field, serialized; None when unset."""
    if not msg.HasField(field):
        return None
    value: any_pb2.Any = getattr(msg, field)
    return value.SerializeToString(deterministic=True)


def to_any(data: bytes | None) -> any_pb2.Any | None:
    if data is None:
        return None
    return any_pb2.Any.FromString(data)
