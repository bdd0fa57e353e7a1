"""The metadata store contract: tables of records, transactions over them.

The object stores (namespaces, images, containers, leases, the namespaced
content and snapshot wrappers, GC) hold all of containerd's rules; a store
backend only has to keep tables of records atomically.  That keeps the
contract narrow enough for an etcd backend to follow the SQLite one:

- a *table* holds records of one type, ordered by their key (a tuple of
  strings, the record's leading fields: namespace first);
- a *transaction function* receives a ``Tx`` and reads and writes tables
  through it.  ``MetadataStore.update`` runs it as one atomic transaction:
  either all its writes land or (when it raises) none does.  ``view`` runs
  it on a consistent read-only snapshot.

Transaction functions run synchronously, possibly on another thread, and an
optimistic backend (etcd) may run one more than once when it conflicts with a
concurrent writer: they must not do anything but read and write through the
``Tx`` (no I/O, no backend calls, no changes to outside state) and must
return a value that tells the caller what happened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from daemon.metadata import records

R = TypeVar("R")
T = TypeVar("T")


@dataclass(frozen=True)
class Table(Generic[R]):
    """A table: ``key`` names the record fields that form its ordered key."""

    name: str
    record: type[R]
    key: tuple[str, ...]

    def key_of(self, record: R) -> tuple[str, ...]:
        return tuple(str(getattr(record, f)) for f in self.key)


NAMESPACES = Table("namespaces", records.Namespace, ("name",))
IMAGES = Table("images", records.Image, ("namespace", "name"))
CONTAINERS = Table("containers", records.Container, ("namespace", "id"))
LEASES = Table("leases", records.Lease, ("namespace", "id"))
LEASE_RESOURCES = Table(
    "lease_resources", records.LeaseResource, ("namespace", "lease", "type", "id")
)
BLOBS = Table("blobs", records.Blob, ("namespace", "digest"))
INGESTS = Table("ingests", records.Ingest, ("namespace", "ref"))
SNAPSHOTS = Table("snapshots", records.Snapshot, ("namespace", "snapshotter", "key"))

TABLES: tuple[Table[Any], ...] = (
    NAMESPACES,
    IMAGES,
    CONTAINERS,
    LEASES,
    LEASE_RESOURCES,
    BLOBS,
    INGESTS,
    SNAPSHOTS,
)


class Tx(Protocol):
    """One transaction.  Keys are given as the leading key fields, in order."""

    @property
    def writable(self) -> bool: ...

    def get(self, table: Table[R], *key: str) -> R | None:
        """The record with exactly this key, or None."""
        ...

    def scan(self, table: Table[R], *prefix: str) -> list[R]:
        """Records whose leading key fields equal ``prefix`` (all when empty), in key order."""
        ...

    def fields(
        self, table: Table[R], names: tuple[str, ...], *prefix: str
    ) -> list[tuple[Any, ...]]:
        """The fields ``names`` of the records ``scan`` would return, one tuple
        per record in key order: for a reader of a few fields of many records
        (the collector), which need not decode the rest."""
        ...

    def count(self, table: Table[R], *prefix: str) -> int:
        """How many records ``scan`` would return."""
        ...

    def put(self, table: Table[R], record: R) -> None:
        """Insert ``record`` or replace the record with its key.

        Raises InvalidArgument in a read-only transaction.
        """
        ...

    def delete(self, table: Table[R], *key: str) -> bool:
        """Remove the record with exactly this key; False when there was none.

        Raises InvalidArgument in a read-only transaction.
        """
        ...

    def delete_all(self, table: Table[R], *prefix: str) -> int:
        """Remove every record ``scan(table, *prefix)`` would return; returns how many.

        Raises InvalidArgument in a read-only transaction.
        """
        ...

    def next_sequence(self, count: int = 1) -> int:
        """The first of ``count`` consecutive numbers never returned before by
        this store (it only grows).

        Raises InvalidArgument in a read-only transaction.
        """
        ...


class MetadataStore(Protocol):
    """Where the daemon's metadata lives (SQLite by default)."""

    async def view(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` on a consistent read-only view; returns what it returns.

        Exceptions from ``fn`` propagate unchanged.
        """
        ...

    async def get(self, table: Table[R], *key: str) -> R | None:
        """The record of ``table`` under the full ``key``, or None: a read of
        one record, as ``view(lambda tx: tx.get(table, *key))`` gives it.

        Raises InvalidArgument when ``key`` is not the full key.
        """
        ...

    async def scan(self, table: Table[R], *prefix: str) -> list[R]:
        """The records of ``table`` whose key starts with ``prefix``, in key
        order: ``view(lambda tx: tx.scan(table, *prefix))``.

        Raises InvalidArgument for a prefix longer than the key.
        """
        ...

    async def update(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` as one atomic read-write transaction; returns what it returns.

        When ``fn`` raises, nothing it wrote is kept and the exception
        propagates unchanged.  Raises Unavailable when the store cannot be
        reached (a remote backend).
        """
        ...

    async def close(self) -> None:
        """Finish pending transactions and release the store; idempotent."""
        ...


@runtime_checkable
class DivisibleUpdates(Protocol):
    """A store whose largest transactions may have to be committed in parts (etcd)."""

    async def update_divisible(self, fn: Callable[[Tx], T]) -> T:
        """Like ``update``, for a function whose writes are each valid on their
        own given what it read (the collector's sweep): they may land in
        several commits, each checked against everything ``fn`` read; when a
        later part finds the state changed, the parts already committed stay
        and ``fn`` runs again on the new state."""
        ...


@runtime_checkable
class ClusterChanges(Protocol):
    """A store shared with other nodes, which tells when they may have freed garbage here."""

    def on_cluster_change(self, fn: Callable[[], None]) -> None:
        """``fn()`` runs after another node deleted or rewrote an image (or the
        store lost track): a collection is due."""
        ...
