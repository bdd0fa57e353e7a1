"""What the overlayfs and native backends share: metadata, walk, usage, removal, cleanup.

Layout under ``root`` (as containerd's overlay and native snapshotters):
``metadata.sqlite`` and ``snapshots/<id>/`` per snapshot.  A subclass says
where a snapshot's own layer lives, how a new snapshot's directory is built
and which mounts assemble it.

Directories are created under a temporary name (``new-*``) and renamed to the
id inside the write transaction that records the snapshot; removals delete
the record first, then rename the directories that lost it to ``rm-*`` and
delete those in the background.  So after any crash the only disagreement is
a directory without a record — exactly what ``cleanup`` deletes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from api import errdefs
from services.snapshotter import fsutil
from services.snapshotter.snapshotter import Info, Kind, Mount, Usage
from services.snapshotter.storage import MetaStore, Snapshot, Transaction, quote

log = logging.getLogger(__name__)

METADATA_FILE = "metadata.sqlite"
# Directories of removed snapshots get this prefix, then are deleted in the background.
TRASH_PREFIX = "rm-"


@contextmanager
def _context(prefix: str) -> Iterator[None]:
    """Prefix a typed error's message, as containerd wraps with ``%w``."""
    try:
        yield
    except errdefs.ErrdefsError as e:
        raise type(e)(f"{prefix}: {e.message}") from None


class LocalSnapshotter(ABC):
    """Base of the backends that keep snapshots as directories under one root."""

    # How Mounts prefixes its errors (differs between containerd's backends).
    mounts_error_prefix = "failed to get active mount"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.snapshots_dir = self.root / "snapshots"
        self.snapshots_dir.mkdir(mode=0o700, exist_ok=True)
        self.ms = MetaStore(self.root / METADATA_FILE)
        self._deleting: set[asyncio.Future[None]] = set()

    # -- what a backend defines ------------------------------------------

    @abstractmethod
    def layer_path(self, snapshot_id: str) -> Path:
        """The directory holding the snapshot's own layer (what usage measures)."""

    @abstractmethod
    def _build(self, tx: Transaction, new_dir: Path, snapshot: Snapshot) -> None:
        """Fill the temporary directory of a snapshot just recorded in ``tx``."""

    @abstractmethod
    def _mounts(self, snapshot: Snapshot) -> list[Mount]:
        """The mounts that assemble ``snapshot``."""

    # -- Snapshotter -----------------------------------------------------

    def snapshot_dir(self, snapshot_id: str) -> Path:
        return self.snapshots_dir / snapshot_id

    # Metadata reads are a few SQLite lookups on a connection no writer
    # holds: they run on the event loop's thread (no thread hop per call).

    async def stat(self, key: str) -> Info:
        return self._stat(key)

    def _stat(self, key: str) -> Info:
        with self.ms.transaction() as tx:
            _, info, _ = tx.get_info(key)
        return info

    async def update(self, info: Info, *fieldpaths: str) -> Info:
        return await asyncio.to_thread(self._update, info, fieldpaths)

    def _update(self, info: Info, fieldpaths: tuple[str, ...]) -> Info:
        with self.ms.transaction(writable=True) as tx:
            return tx.update_info(info, fieldpaths)

    async def usage(self, key: str) -> Usage:
        with self.ms.transaction() as tx:
            sid, info, usage = tx.get_info(key)
        if info.kind == Kind.ACTIVE:
            # Measured now, in a worker thread: it may take long.
            return await asyncio.to_thread(fsutil.disk_usage, self.layer_path(sid))
        return usage

    async def mounts(self, key: str) -> list[Mount]:
        return self._get_mounts(key)

    def _get_mounts(self, key: str) -> list[Mount]:
        with _context(self.mounts_error_prefix), self.ms.transaction() as tx:
            snapshot = tx.get_snapshot(key)
        return self._mounts(snapshot)

    async def prepare(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return await asyncio.to_thread(self._create, Kind.ACTIVE, key, parent, labels)

    async def view(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return await asyncio.to_thread(self._create, Kind.VIEW, key, parent, labels)

    def _needs_dir(self, kind: Kind, parent: str) -> bool:
        return True

    def _create(
        self, kind: Kind, key: str, parent: str, labels: Mapping[str, str] | None
    ) -> list[Mount]:
        # The temporary directory is made inside the write transaction so a
        # concurrent cleanup (which needs the same lock) never sees it.
        with self.ms.transaction(writable=True) as tx:
            new_dir: Path | None = None
            try:
                with _context("failed to create snapshot"):
                    snapshot = tx.create_snapshot(kind, key, parent, labels)
                if self._needs_dir(kind, parent):
                    new_dir = Path(tempfile.mkdtemp(prefix="new-", dir=self.snapshots_dir))
                    os.chmod(new_dir, 0o755)
                    self._build(tx, new_dir, snapshot)
                    final = self.snapshot_dir(snapshot.id)
                    if os.path.lexists(final):
                        # A fresh id whose directory exists: left by an attempt
                        # whose transaction rolled back (ids are reused then).
                        log.warning("removing stale snapshot directory %s", final)
                        shutil.rmtree(final)
                    os.rename(new_dir, final)
                    new_dir = None
            finally:
                if new_dir is not None:
                    shutil.rmtree(new_dir, ignore_errors=True)
        log.debug("created %s snapshot %s (id %s) parent %r", kind, key, snapshot.id, parent)
        return self._mounts(snapshot)

    async def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        await asyncio.to_thread(self._commit, name, key, labels)

    def _commit(self, name: str, key: str, labels: Mapping[str, str] | None) -> None:
        with self.ms.transaction() as tx:
            sid, info, _ = tx.get_info(key)
        # Measured outside the write lock (it can take long); the id check
        # below notices if the snapshot changed hands meanwhile.  Only an
        # active snapshot gets that far: commit_active rejects the others.
        usage = fsutil.disk_usage(self.layer_path(sid)) if info.kind == Kind.ACTIVE else Usage()
        with self.ms.transaction(writable=True) as tx:
            if info.kind == Kind.ACTIVE and tx.get_info(key)[0] != sid:
                raise errdefs.Aborted(f"snapshot {quote(key)} changed while being committed")
            with _context("failed to commit snapshot"):
                tx.commit_active(key, name, usage, labels)
        log.debug("committed %s as %s (id %s)", key, name, sid)

    async def remove(self, key: str) -> None:
        trash = await asyncio.to_thread(self._remove, key)
        if trash:
            # Deleting a big layer must not hold up the caller; cleanup() and
            # close() wait for it, and a crash leaves it to cleanup().
            task = asyncio.ensure_future(asyncio.to_thread(self._delete, trash))
            self._deleting.add(task)
            task.add_done_callback(self._deleting.discard)

    def _remove(self, key: str) -> list[Path]:
        trash: list[Path] = []
        with self.ms.transaction(writable=True) as tx:
            with _context("failed to remove"):
                sid, _ = tx.remove(key)
            doomed = [p for p in self._orphans(tx) if not p.name.startswith(TRASH_PREFIX)]
            # Renamed once the removal is durable and before any new snapshot
            # can be recorded, so a reused id never meets a doomed directory.
            tx.on_commit.append(lambda: trash.extend(self._to_trash(doomed)))
        log.debug("removed %s (id %s)", key, sid)
        return trash

    def _to_trash(self, paths: list[Path]) -> list[Path]:
        moved = []
        for path in paths:
            dest = path.with_name(f"{TRASH_PREFIX}{path.name}")
            try:
                if os.path.lexists(dest):
                    dest = Path(
                        tempfile.mkdtemp(prefix=f"{TRASH_PREFIX}{path.name}-", dir=path.parent)
                    )
                os.rename(path, dest)
            except OSError as e:
                log.warning("cannot move %s aside for removal: %s", path, e)
                continue
            moved.append(dest)
        return moved

    async def walk(self, *filters: str) -> AsyncIterator[Info]:
        infos = await asyncio.to_thread(self._walk, filters)
        for info in infos:
            yield info

    def _walk(self, filters: tuple[str, ...]) -> list[Info]:
        with self.ms.transaction() as tx:
            return tx.walk_info(*filters)

    async def cleanup(self) -> None:
        await self._settle()
        await asyncio.to_thread(self._cleanup)

    async def _settle(self) -> None:
        """Wait for the deletions earlier removals started."""
        while self._deleting:
            await asyncio.gather(*self._deleting, return_exceptions=True)

    def _cleanup(self) -> None:
        with self.ms.transaction(writable=True) as tx:
            orphans = self._orphans(tx)
            # Moved aside under the lock: an orphan named after an id that a
            # rolled-back transaction gave out may be that id's next owner's
            # name once the lock is released.
            trash = [p for p in orphans if p.name.startswith(TRASH_PREFIX)]
            trash += self._to_trash([p for p in orphans if not p.name.startswith(TRASH_PREFIX)])
        self._delete(trash)

    async def close(self) -> None:
        await self._settle()
        self.ms.close()

    # -- helpers ---------------------------------------------------------

    def counts_by_kind(self) -> dict[Kind, int]:
        """Snapshots per kind, read synchronously (for metrics at scrape time)."""
        with self.ms.transaction() as tx:
            return tx.counts_by_kind()

    def _orphans(self, tx: Transaction) -> list[Path]:
        """Directories under snapshots/ that belong to no recorded snapshot."""
        ids = tx.id_map()
        return [
            self.snapshots_dir / name
            for name in sorted(os.listdir(self.snapshots_dir))
            if name not in ids
        ]

    @staticmethod
    def _delete(paths: list[Path]) -> None:
        for path in paths:
            try:
                shutil.rmtree(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("failed to remove directory %s: %s", path, e)
