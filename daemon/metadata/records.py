"""The objects the metadata store keeps, one frozen dataclass per table.

Every record carries its namespace; times are UTC nanoseconds since the epoch
(0 when unset).  Protobuf ``Any`` values (a container's spec, runtime options
and extensions) are kept as their serialized bytes: the store never looks
inside them.  Records are plain values so that any backend (SQLite, etcd)
can encode them field by field.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from api.types import Descriptor as Descriptor

Labels = Mapping[str, str]


def now_ns() -> int:
    return time.time_ns()


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: Labels = field(default_factory=dict)


@dataclass(frozen=True)
class Image:
    namespace: str
    name: str
    target: Descriptor
    labels: Labels = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0


@dataclass(frozen=True)
class Container:
    namespace: str
    id: str
    runtime_name: str
    spec: bytes | None  # a serialized google.protobuf.Any
    runtime_options: bytes | None = None  # likewise
    labels: Labels = field(default_factory=dict)
    image: str = ""
    snapshotter: str = ""
    snapshot_key: str = ""
    extensions: Mapping[str, bytes] = field(default_factory=dict)  # name -> serialized Any
    sandbox: str = ""
    created_at: int = 0
    updated_at: int = 0


@dataclass(frozen=True)
class Lease:
    namespace: str
    id: str
    labels: Labels = field(default_factory=dict)
    created_at: int = 0


@dataclass(frozen=True)
class LeaseResource:
    """A resource a lease holds: ``type`` is containerd's resource type,
    ``content``, ``ingests`` or ``snapshots/<snapshotter>``; ``id`` a digest,
    an ingest ref or a snapshot key."""

    namespace: str
    lease: str
    type: str
    id: str


@dataclass(frozen=True)
class Blob:
    """A committed blob as one namespace sees it; the bytes live in the backend."""

    namespace: str
    digest: str
    size: int
    labels: Labels = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0


@dataclass(frozen=True)
class Ingest:
    """An ingest of one namespace.

    ``backend_ref`` is the ref the backend knows it by (namespaced, so two
    namespaces writing the same ref never share an ingest).  ``expected`` is
    set when the blob already exists in the backend (written by another
    namespace) and the ingest only has to prove nothing; ``expire_at`` (0:
    never) lets GC drop an ingest no lease holds.
    """

    namespace: str
    ref: str
    backend_ref: str
    expected: str = ""
    total: int = 0
    expire_at: int = 0
    started_at: int = 0


@dataclass(frozen=True)
class Snapshot:
    """A snapshot as one namespace sees it; ``backend_key`` names it in the backend."""

    namespace: str
    snapshotter: str
    key: str
    backend_key: str
    parent: str = ""
    kind: int = 0  # services.snapshotter.snapshotter.Kind
    labels: Labels = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0
