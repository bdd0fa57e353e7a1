"""The snapshotter contract: vocabulary, value types and the ``Snapshotter`` protocol.

A *snapshot* is a directory tree a container or an unpacker mounts.  It has a
*kind*:

- **active** — writable, created by ``prepare`` on top of an optional parent;
- **view** — read-only, created by ``view`` on top of an optional parent;
- **committed** — immutable, created by ``commit`` from an active snapshot;
  only committed snapshots can be parents.

Active and view snapshots are addressed by their *key*; a committed snapshot
by its *name*.  Keys and names share one space: no two snapshots of a
snapshotter have the same one.  The snapshots with a parent form chains; a
snapshot that still has children cannot be removed.

This is the contract every backend (overlayfs, native), the gRPC proxy client
and any user-written snapshotter served through ``services.snapshotter.sdk``
implement.  It mirrors containerd's ``snapshots.Snapshotter`` (v1.6
``snapshots/snapshotter.go``), with Go's functional options replaced by a
``labels`` mapping and ``Walk``'s callback by an async iterator.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypeVar, runtime_checkable

from api import errdefs
from api.labels import validate_labels as validate_labels  # part of the SDK surface
from api.types import Mount as Mount  # part of the SDK surface

# The label with which an unpacker names the committed snapshot it is about
# to build (the layer's chain id).  A backend that already has it (a remote
# or shared-cache snapshotter) may answer Prepare with AlreadyExists;
# containerd then looks the target up by this label (metadata/snapshot.go).
LABEL_SNAPSHOT_REF = "containerd.io/snapshot.ref"

# Labels with this prefix (and LABEL_SNAPSHOT_REF) are the only ones
# containerd's metadata layer passes down to a backend snapshotter.
INHERITED_LABELS_PREFIX = "containerd.io/snapshot/"


# A label's key plus value may not exceed this many bytes (labels/validate.go).
class Kind(enum.IntEnum):
    """Snapshot kinds, numbered as containerd's ``snapshots.Kind`` and the wire enum."""

    UNKNOWN = 0
    VIEW = 1
    ACTIVE = 2
    COMMITTED = 3

    def __str__(self) -> str:
        # The spelling filters ("kind==active") and ctr use.
        return self.name.lower()


def _epoch() -> datetime:
    return datetime.fromtimestamp(0, UTC)


@dataclass(frozen=True)
class Info:
    """What a snapshotter knows about one snapshot.

    ``name`` is the key (active, view) or name (committed); ``parent`` the
    name of the committed parent, empty for none.  Only ``labels`` can be
    changed (through ``update``); the timestamps are UTC.
    """

    name: str
    kind: Kind = Kind.UNKNOWN
    parent: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    created: datetime = field(default_factory=_epoch)
    updated: datetime = field(default_factory=_epoch)


@dataclass(frozen=True)
class Usage:
    """Resources a snapshot's own layer takes: bytes allocated and inodes."""

    size: int = 0
    inodes: int = 0


@runtime_checkable
class Snapshotter(Protocol):
    """A snapshotter (containerd's ``snapshots.Snapshotter``).

    Every method may also raise ``errdefs.Unavailable`` when the
    implementation is remote and cannot be reached.
    """

    async def stat(self, key: str) -> Info:
        """Information about the snapshot ``key`` (any kind).

        Raises NotFound when there is no such snapshot.
        """
        ...

    async def update(self, info: Info, *fieldpaths: str) -> Info:
        """Change the labels of snapshot ``info.name``; returns the result.

        ``fieldpaths`` select what changes: ``"labels"`` replaces all labels
        with ``info.labels``; ``"labels.<key>"`` sets (or, if ``info.labels``
        lacks it, removes) one label; none means all mutable fields, i.e.
        ``"labels"``.  Labels with empty values are dropped.  ``updated`` is
        set to now.

        Raises NotFound when there is no such snapshot; InvalidArgument for any
        other field path (name, parent, kind and timestamps are immutable) or
        a label over the size limit.
        """
        ...

    async def usage(self, key: str) -> Usage:
        """Disk usage of the snapshot's own layer, not counting its parents.

        For a committed snapshot this is the figure recorded at commit; for an
        active one it is measured now and may take time.

        Raises NotFound when there is no such snapshot.
        """
        ...

    async def mounts(self, key: str) -> list[Mount]:
        """The mounts of an active or view snapshot, as ``prepare`` or ``view`` returned.

        Raises NotFound when there is no such snapshot; FailedPrecondition when
        it is committed (committed snapshots are never mounted directly).
        """
        ...

    async def prepare(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        """Create the active snapshot ``key`` on top of ``parent``; return its mounts.

        Raises AlreadyExists when ``key`` is taken — or, for a backend that can
        provide layers itself, when ``labels`` carries LABEL_SNAPSHOT_REF and
        the backend now has a committed snapshot of that name (the caller
        then uses it instead of unpacking); NotFound when ``parent`` does not
        exist; InvalidArgument when ``parent`` is not committed or a label is
        over the size limit.
        """
        ...

    async def view(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        """Create the read-only view ``key`` of ``parent``; return its mounts.

        Raises AlreadyExists when ``key`` is taken; NotFound when ``parent``
        does not exist; InvalidArgument when ``parent`` is not committed or a
        label is over the size limit.
        """
        ...

    async def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        """Turn the active snapshot ``key`` into the committed snapshot ``name``.

        ``key`` is gone afterwards; ``name`` keeps its parent and gets
        ``labels`` (the active snapshot's labels are not inherited), fresh
        timestamps and its recorded usage.

        Raises NotFound when ``key`` does not exist; AlreadyExists when
        ``name`` is taken; FailedPrecondition when ``key`` is not active (a
        view or a committed snapshot cannot be committed).
        """
        ...

    async def remove(self, key: str) -> None:
        """Remove the snapshot ``key`` (any kind); its storage is freed now or at ``cleanup``.

        Raises NotFound when there is no such snapshot; FailedPrecondition when
        it still has children.
        """
        ...

    def walk(self, *filters: str) -> AsyncIterator[Info]:
        """Every snapshot matching any of the containerd ``filters`` (all when none).

        Fields: ``name``, ``parent``, ``kind`` (active, view, committed) and
        ``labels.<key>``.  Raises InvalidArgument for a filter that does not
        parse (when iteration starts).
        """
        ...

    async def cleanup(self) -> None:
        """Free storage that belongs to no snapshot (removed or abandoned ones).

        Raises errdefs.NotImplemented when the snapshotter has nothing to clean
        up this way.
        """
        ...

    async def close(self) -> None:
        """Release resources; calling it twice is harmless."""
        ...


class Forwarding:
    """A Snapshotter that hands every call to ``inner``: subclass it to wrap one.

    Override only what the wrapper changes (see ``metrics.Instrumented``,
    ``remote.ProvidedLayers``, ``example_stats.StatsSnapshotter``).
    """

    def __init__(self, inner: Snapshotter) -> None:
        self.inner = inner

    async def stat(self, key: str) -> Info:
        return await self.inner.stat(key)

    async def update(self, info: Info, *fieldpaths: str) -> Info:
        return await self.inner.update(info, *fieldpaths)

    async def usage(self, key: str) -> Usage:
        return await self.inner.usage(key)

    async def mounts(self, key: str) -> list[Mount]:
        return await self.inner.mounts(key)

    async def prepare(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return await self.inner.prepare(key, parent, labels)

    async def view(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return await self.inner.view(key, parent, labels)

    async def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        await self.inner.commit(name, key, labels)

    async def remove(self, key: str) -> None:
        await self.inner.remove(key)

    def walk(self, *filters: str) -> AsyncIterator[Info]:
        return self.inner.walk(*filters)

    async def cleanup(self) -> None:
        await self.inner.cleanup()

    async def close(self) -> None:
        await self.inner.close()


S = TypeVar("S")


def by_name(snapshotters: Mapping[str, S], name: str) -> S:
    """The snapshotter a request names (containerd's answers when it names none
    or one that is not loaded: InvalidArgument)."""
    if not name:
        raise errdefs.InvalidArgument("snapshotter argument missing")
    sn = snapshotters.get(name)
    if sn is None:
        raise errdefs.InvalidArgument(f"snapshotter not loaded: {name}")
    return sn
