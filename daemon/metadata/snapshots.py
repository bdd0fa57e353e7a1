"""Snapshots as each namespace sees them, over one backend snapshotter
(containerd's metadata/snapshot.go).

Each namespace's key maps to a backend key ``<ns>/<seq>/<key>``, so
namespaces never collide and a key reused after removal never meets a stale
backend snapshot.  Labels live per namespace in the metadata; only the
``containerd.io/snapshot/...`` labels and ``containerd.io/snapshot.ref`` are
passed down to the backend.

Stat is answered from the record: the kind of a key is fixed when this layer
creates it (Prepare: active, View: view, Commit: committed under the new
name, a remote snapshot it adopts: committed) and kept with it, and name,
parent, labels and times are the namespace's own, as in containerd.  The
backend is asked only for a record whose kind is unknown (0: written
without one); Usage and Mounts always go to the backend.  Unlike
containerd, a Stat therefore succeeds for a key whose backend snapshot was
lost behind the metadata's back (Mounts and Usage still fail for it).

Remote snapshots: a Prepare whose labels carry ``containerd.io/snapshot.ref``
names the committed snapshot it is about to build.  A backend that already
has it answers AlreadyExists; the wrapper then finds that snapshot (by the
label and parent), records it under the target name in this namespace and
answers AlreadyExists too, which tells the unpacker to skip the layer.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import logging
from collections.abc import Mapping
from datetime import UTC, datetime

from api import errdefs, filters
from daemon.metadata import records
from daemon.metadata.db import MetadataDB, ensure_namespace
from daemon.metadata.leases import SNAPSHOTS as SNAPSHOT_RESOURCE
from daemon.metadata.leases import add_to_lease, remove_from_lease
from daemon.metadata.locks import RWLock
from daemon.metadata.store import SNAPSHOTS, Tx
from daemon.metadata.validation import apply_label_paths, q, validate_labels
from services.snapshotter.snapshotter import (
    INHERITED_LABELS_PREFIX,
    LABEL_SNAPSHOT_REF,
    Info,
    Kind,
    Mount,
    Snapshotter,
    Usage,
)

log = logging.getLogger(__name__)


def inherited(labels: Mapping[str, str] | None) -> dict[str, str]:
    """The labels a backend gets (snapshots.FilterInheritedLabels)."""
    return {
        k: v
        for k, v in (labels or {}).items()
        if k.startswith(INHERITED_LABELS_PREFIX) or k == LABEL_SNAPSHOT_REF
    }


def _dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)


def _ns(dt: datetime) -> int:
    return int(dt.timestamp() * 1e9)


def _overlay(backend: Info, local: records.Snapshot) -> Info:
    """The backend's view (kind, inherited labels) under the namespace's own."""
    return Info(
        name=local.key,
        kind=backend.kind,
        parent=local.parent,
        labels={**backend.labels, **local.labels},
        created=_dt(local.created_at),
        updated=_dt(local.updated_at),
    )


_KNOWN_KINDS = frozenset({Kind.VIEW, Kind.ACTIVE, Kind.COMMITTED})


def _recorded(local: records.Snapshot) -> Info | None:
    """The Info the record alone gives, or None when its kind is unknown."""
    if local.kind not in _KNOWN_KINDS:
        return None
    return Info(
        name=local.key,
        kind=Kind(local.kind),
        parent=local.parent,
        labels=dict(local.labels),
        created=_dt(local.created_at),
        updated=_dt(local.updated_at),
    )


def _missing(key: str) -> errdefs.NotFound:
    return errdefs.NotFound(f"snapshot {key} does not exist")


class NamespacedSnapshotter:
    """One snapshotter by name, namespaced; every call names its namespace."""

    def __init__(self, db: MetadataDB, name: str, backend: Snapshotter) -> None:
        self.db = db
        self.name = name
        self.backend = backend
        # Shared by every operation, exclusive for the collector.
        self.lock = RWLock()
        # Serialises the metadata steps around a backend commit or update,
        # which containerd runs inside one bolt write transaction.
        self._mutate = asyncio.Lock()

    @property
    def resource(self) -> str:
        return f"{SNAPSHOT_RESOURCE}/{self.name}"

    async def _record(self, ns: str, key: str) -> records.Snapshot:
        rec = await self.db.get(SNAPSHOTS, ns, self.name, key)
        if rec is None:
            raise _missing(key)
        return rec

    async def stat(self, ns: str, key: str) -> Info:
        """Raises NotFound (and, for a record of unknown kind, the backend's errors)."""
        rec = await self._record(ns, key)
        info = _recorded(rec)
        if info is not None:
            return info
        return _overlay(await self.backend.stat(rec.backend_key), rec)

    async def update(self, ns: str, info: Info, *paths: str) -> Info:
        """Change the namespace's labels (``labels``, ``labels.<key>``).

        Raises InvalidArgument (no name, another path, label), NotFound.
        """
        if not info.name:
            raise errdefs.InvalidArgument("snapshot name is required")
        async with self.lock.shared(), self._mutate:
            rec = await self._record(ns, info.name)
            labels: Mapping[str, str] = rec.labels
            for path in paths or ("labels",):
                applied = apply_label_paths(labels, info.labels, path)
                if applied is None:
                    raise errdefs.InvalidArgument(
                        f"cannot update {q(path)} field on snapshot {q(info.name)}"
                    )
                labels = applied
            validate_labels(labels, "info.Labels")
            updated = dataclasses.replace(rec, labels=labels, updated_at=records.now_ns())
            binfo = await self.backend.update(
                Info(name=rec.backend_key, labels=inherited(labels)), *paths
            )

            def txn(tx: Tx) -> None:
                if tx.get(SNAPSHOTS, ns, self.name, info.name) is None:
                    raise _missing(info.name)
                tx.put(SNAPSHOTS, updated)

            await self.db.update(txn)
            return _overlay(binfo, updated)

    async def usage(self, ns: str, key: str) -> Usage:
        rec = await self._record(ns, key)
        return await self.backend.usage(rec.backend_key)

    async def mounts(self, ns: str, key: str) -> builtins.list[Mount]:
        rec = await self._record(ns, key)
        return await self.backend.mounts(rec.backend_key)

    async def prepare(
        self,
        ns: str,
        key: str,
        parent: str = "",
        labels: Mapping[str, str] | None = None,
        lease: str = "",
    ) -> builtins.list[Mount]:
        return await self._create(ns, key, parent, labels or {}, Kind.ACTIVE, lease)

    async def view(
        self,
        ns: str,
        key: str,
        parent: str = "",
        labels: Mapping[str, str] | None = None,
        lease: str = "",
    ) -> builtins.list[Mount]:
        return await self._create(ns, key, parent, labels or {}, Kind.VIEW, lease)

    async def _create(
        self,
        ns: str,
        key: str,
        parent: str,
        labels: Mapping[str, str],
        kind: Kind,
        lease: str,
    ) -> builtins.list[Mount]:
        if not key:
            # containerd 1.6 answers Unknown ("bucket name required", from
            # bolt); the record it would make could never be removed here.
            raise errdefs.InvalidArgument("key must not be empty")
        validate_labels(labels, "info.Labels")
        target = labels.get(LABEL_SNAPSHOT_REF, "")
        name = self.name

        def check(tx: Tx) -> str:
            if target and tx.get(SNAPSHOTS, ns, name, target) is not None:
                raise errdefs.AlreadyExists(f"target snapshot {q(target)}")
            if tx.get(SNAPSHOTS, ns, name, key) is not None:
                raise errdefs.AlreadyExists(f"snapshot {q(key)}")
            bparent = ""
            if parent:
                prec = tx.get(SNAPSHOTS, ns, name, parent)
                if prec is None:
                    raise errdefs.NotFound(f"parent snapshot {parent} does not exist")
                bparent = prec.backend_key
            return bparent

        async with self.lock.shared():
            # A read: ``record`` below checks again, in the one write
            # transaction, before anything is recorded.
            bparent = await self.db.view(check)
            bkey = f"{ns}/{await self.db.sequence()}/{key}"
            now = records.now_ns()
            rec = records.Snapshot(ns, name, key, bkey, parent, int(kind), dict(labels), now, now)
            created = ""
            outcome: errdefs.ErrdefsError | None = None
            mounts: builtins.list[Mount] = []
            try:
                if kind == Kind.VIEW:
                    mounts = await self.backend.view(bkey, bparent, inherited(labels))
                else:
                    mounts = await self.backend.prepare(bkey, bparent, inherited(labels))
                created = bkey
            except errdefs.AlreadyExists as e:
                if not target:
                    # The key is fresh: the backend should never say this.
                    raise errdefs.Unknown(f"unexpected error from snapshotter: {e}") from None
                rec = await self._adopt(rec, target, bparent)
                outcome = errdefs.AlreadyExists(f"target snapshot {q(target)} from snapshotter")

            def record(tx: Tx) -> errdefs.ErrdefsError | None:
                ensure_namespace(tx, ns)
                add_to_lease(tx, ns, lease, self.resource, rec.key)
                if tx.get(SNAPSHOTS, ns, name, rec.key) is not None:
                    return errdefs.AlreadyExists(f"snapshot {q(rec.key)}")
                if parent:
                    prec = tx.get(SNAPSHOTS, ns, name, parent)
                    if prec is None:
                        raise errdefs.NotFound(f"parent snapshot {parent} does not exist")
                    if prec.backend_key != bparent:
                        raise errdefs.InvalidArgument(
                            f"mismatched parent {parent} from target {target}"
                        )
                tx.put(SNAPSHOTS, rec)
                return None

            try:
                async with self._mutate:
                    outcome = (await self.db.update(record)) or outcome
            except errdefs.ErrdefsError as e:
                outcome = e
            if outcome is not None:
                if created:
                    await self._discard(created)
                raise outcome
            return mounts

    async def _adopt(self, rec: records.Snapshot, target: str, bparent: str) -> records.Snapshot:
        """The record for a backend's existing committed ``target`` (remote snapshots)."""
        flt = f'labels."{LABEL_SNAPSHOT_REF}"=={target},parent=={filters.quote(bparent)}'
        found: Info | None = None
        async for info in self.backend.walk(flt):
            # Check again: a backend may ignore filters.
            if (
                info.kind == Kind.COMMITTED
                and info.labels.get(LABEL_SNAPSHOT_REF) == target
                and info.parent == bparent
            ):
                found = info
                break
        if found is None:
            raise errdefs.NotFound(f"target snapshot {q(target)} in backend")
        labels = {**found.labels, **rec.labels}
        return dataclasses.replace(
            rec,
            key=target,
            backend_key=found.name,
            kind=int(Kind.COMMITTED),
            labels=labels,
            created_at=_ns(found.created),
            updated_at=_ns(found.updated),
        )

    async def _discard(self, bkey: str) -> None:
        try:
            await self.backend.remove(bkey)
        except errdefs.ErrdefsError as e:
            log.error(
                "snapshotter %s: failed to clean up unreferenced snapshot %s: %s",
                self.name,
                bkey,
                e,
            )

    async def commit(
        self,
        ns: str,
        name: str,
        key: str,
        labels: Mapping[str, str] | None = None,
        lease: str = "",
    ) -> None:
        """Raises InvalidArgument (empty name, label), AlreadyExists (name),
        NotFound (key), the backend's errors."""
        if not name:
            raise errdefs.InvalidArgument("name must not be empty")
        labels = dict(labels or {})
        validate_labels(labels, "info.Labels")
        sn = self.name

        def check(tx: Tx) -> records.Snapshot:
            if tx.get(SNAPSHOTS, ns, sn, name) is not None:
                raise errdefs.AlreadyExists(f"snapshot {q(name)}")
            active = tx.get(SNAPSHOTS, ns, sn, key)
            if active is None:
                raise _missing(key)
            if active.parent and tx.get(SNAPSHOTS, ns, sn, active.parent) is None:
                raise errdefs.NotFound(f"parent snapshot {active.parent} does not exist")
            return active

        async with self.lock.shared(), self._mutate:
            # A read: commits and creations are serialised by _mutate, so
            # nothing recorded here can change before ``record`` below.
            active = await self.db.view(check)
            bname = f"{ns}/{await self.db.sequence()}/{name}"
            try:
                await self.backend.commit(bname, active.backend_key, inherited(labels))
            except errdefs.NotFound as e:
                log.error(
                    "snapshotter %s: uncommittable snapshot %s in %s, missing in backend: %s",
                    sn,
                    key,
                    ns,
                    e,
                )
                raise
            now = records.now_ns()
            committed = records.Snapshot(
                ns, sn, name, bname, active.parent, int(Kind.COMMITTED), labels, now, now
            )

            def record(tx: Tx) -> None:
                ensure_namespace(tx, ns)
                tx.delete(SNAPSHOTS, ns, sn, key)
                remove_from_lease(tx, ns, lease, self.resource, key)
                add_to_lease(tx, ns, lease, self.resource, name)
                tx.put(SNAPSHOTS, committed)

            try:
                await self.db.update(record)
            except BaseException:
                log.error(
                    "snapshotter %s: committed %s in the backend as %s but could not record it",
                    sn,
                    key,
                    bname,
                )
                raise

    async def remove(self, ns: str, key: str, lease: str = "") -> None:
        """Forget ``key`` in ``ns``; the collector removes it from the backend.

        Raises NotFound, FailedPrecondition while it has children.
        """
        sn = self.name

        def txn(tx: Tx) -> None:
            if tx.get(SNAPSHOTS, ns, sn, key) is None:
                raise _missing(key)
            # A parentless snapshot has parent "": it is nobody's child, not
            # the child of a snapshot whose key is "" (made before empty keys
            # were refused, and removable like any other).
            if any(s.parent and s.parent == key for s in tx.scan(SNAPSHOTS, ns, sn)):
                raise errdefs.FailedPrecondition("cannot remove snapshot with child")
            tx.delete(SNAPSHOTS, ns, sn, key)
            remove_from_lease(tx, ns, lease, self.resource, key)

        async with self.lock.shared(), self._mutate:
            await self.db.update(txn, dirty=True, snapshotter=sn)

    async def walk(self, ns: str, *exprs: str) -> builtins.list[Info]:
        """The namespace's snapshots matching any of the filters (name, parent,
        kind, labels.<key>).  Raises InvalidArgument for a bad filter."""
        flt = await filters.parse_all_async(*exprs)
        recs = await self.db.scan(SNAPSHOTS, ns, self.name)
        if not recs:
            return []
        by_key: dict[str, Info] = {}
        if len(recs) > 8:
            by_key = {i.name: i async for i in self.backend.walk()}
        out = []
        for rec in recs:
            binfo = by_key.get(rec.backend_key)
            if binfo is None:
                try:
                    binfo = await self.backend.stat(rec.backend_key)
                except errdefs.NotFound:
                    continue
            out.append(_overlay(binfo, rec))
        return await filters.select(
            flt, out, lambda i: filters.adapt_snapshot(i.kind, i.name, i.parent, i.labels)
        )

    async def cleanup(self) -> None:
        """The backend's Cleanup; raises errdefs.NotImplemented when it has none."""
        async with self.lock.shared():
            await self.backend.cleanup()

    async def garbage_collect(self) -> int:
        """Remove backend snapshots no namespace records, children first; then
        let the backend free their storage.  Returns how many went."""
        async with self.lock.exclusive():
            keep = await self.db.view(
                lambda tx: {s.backend_key for s in tx.scan(SNAPSHOTS) if s.snapshotter == self.name}
            )
            children: dict[str, builtins.list[Info]] = {}
            roots: builtins.list[Info] = []
            async for info in self.backend.walk():
                if info.parent:
                    children.setdefault(info.parent, []).append(info)
                else:
                    roots.append(info)
            removed = 0

            async def prune(info: Info) -> None:
                nonlocal removed
                for child in children.get(info.name, []):
                    await prune(child)
                if info.name in keep:
                    return
                try:
                    await self.backend.remove(info.name)
                except errdefs.FailedPrecondition as e:
                    log.warning("snapshotter %s: gc: cannot remove %s: %s", self.name, info.name, e)
                except errdefs.NotFound:
                    pass
                else:
                    removed += 1
                    log.debug("snapshotter %s: gc: removed %s", self.name, info.name)

            for root in roots:
                await prune(root)
            # Snapshots whose parent the walk did not show (a backend that
            # lists inconsistently) are left for the next collection.
        with contextlib.suppress(errdefs.NotImplemented):
            await self.backend.cleanup()
        return removed
