"""One garbage collection: sweep the metadata, then free the backends
(containerd's ``metadata.DB.GarbageCollect``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from daemon.metadata.content import NamespacedContent
from daemon.metadata.db import MetadataDB
from daemon.metadata.gc import SweepResult, mark_and_sweep
from daemon.metadata.snapshots import NamespacedSnapshotter
from daemon.metadata.store import DivisibleUpdates, Tx

log = logging.getLogger(__name__)

# Seconds one backend's cleanup may take before the collection moves on.
BACKEND_TIMEOUT = 10.0


def _why(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return f"no answer within {BACKEND_TIMEOUT:g}s (retried later)"
    return str(e)


@dataclass
class GCStats:
    """How long each phase took (seconds) and what went."""

    metadata: float = 0.0
    content: float = 0.0
    snapshots: dict[str, float] = field(default_factory=dict)
    sweep: SweepResult = field(default_factory=SweepResult)
    backend_removed: int = 0
    # A backend could not be cleaned (a plugin was down): collect again soon.
    incomplete: bool = False
    # The backends that failed or timed out this round ("content", snapshotter names).
    failed: list[str] = field(default_factory=list)

    @property
    def elapsed(self) -> float:
        return self.metadata


class Collector:
    """Collects garbage across the metadata and every backend it fronts."""

    def __init__(
        self,
        db: MetadataDB,
        content: NamespacedContent | None,
        snapshotters: Mapping[str, NamespacedSnapshotter],
    ) -> None:
        self.db = db
        self.content = content
        self.snapshotters = dict(snapshotters)
        # Until a first collection has looked at every backend, anything a
        # crash left behind there (a blob committed but never recorded, a
        # prepared snapshot never recorded) is garbage nobody flagged.
        self._swept_backends = False
        # One backend that hangs must not hold the collection (and every
        # ``--sync`` delete waiting on it): it is given up on, retried later.
        self.backend_timeout = BACKEND_TIMEOUT
        self._runs: list[SweepResult] = []

    async def _sweep(self, stats: GCStats, now: datetime) -> None:
        """The metadata phase: one mark-and-sweep transaction (``self._runs``
        has every run of it: a store that commits a large sweep in parts may
        run it more than once, each run removing something)."""
        store = self.db.store
        self._runs = []

        def sweep(tx: Tx) -> SweepResult:
            result = mark_and_sweep(tx, now)
            self._runs.append(result)
            return result

        if isinstance(store, DivisibleUpdates):
            stats.sweep = await store.update_divisible(sweep)
        else:
            stats.sweep = await store.update(sweep)

    async def collect(self) -> GCStats:
        db = self.db
        # Take the dirty flags before sweeping: a deletion committed after
        # this point marks them again and schedules another collection.
        db.dirty = 0
        content_dirty, db.dirty_content = db.dirty_content, False
        dirty_snapshotters, db.dirty_snapshotters = db.dirty_snapshotters, set()
        first = not self._swept_backends
        if first:
            content_dirty = True
            dirty_snapshotters = set(self.snapshotters)
            self._swept_backends = True

        stats = GCStats()
        t0 = time.perf_counter()
        now = datetime.now(UTC)
        try:
            await self._sweep(stats, now)
        except BaseException:
            # Nothing was freed in the backends: what was due stays due (a
            # store that was out of reach, e.g. etcd without quorum).
            db.dirty_content = db.dirty_content or content_dirty
            db.dirty_snapshotters |= dirty_snapshotters
            for run in self._runs:  # parts already committed, with what they removed
                db.dirty_content = db.dirty_content or run.content
                db.dirty_snapshotters |= run.snapshotters
            if first:
                self._swept_backends = False
            raise
        for run in self._runs:
            content_dirty = content_dirty or run.content
            dirty_snapshotters |= run.snapshotters
        stats.metadata = time.perf_counter() - t0
        content_dirty = content_dirty or stats.sweep.content
        dirty_snapshotters |= stats.sweep.snapshotters

        async def content_gc() -> None:
            assert self.content is not None
            t = time.perf_counter()
            try:
                async with asyncio.timeout(self.backend_timeout):
                    stats.backend_removed += await self.content.garbage_collect()
            except Exception as e:
                log.warning("content garbage collection failed: %s", _why(e))
                db.dirty_content = True  # try again next time
                stats.incomplete = True
                stats.failed.append("content")
            stats.content = time.perf_counter() - t

        async def snapshot_gc(name: str) -> None:
            sn = self.snapshotters[name]
            t = time.perf_counter()
            try:
                async with asyncio.timeout(self.backend_timeout):
                    stats.backend_removed += await sn.garbage_collect()
            except Exception as e:
                log.warning("snapshotter %s: garbage collection failed: %s", name, _why(e))
                db.dirty_snapshotters.add(name)
                stats.incomplete = True
                stats.failed.append(name)
            stats.snapshots[name] = time.perf_counter() - t

        jobs = [snapshot_gc(n) for n in sorted(dirty_snapshotters) if n in self.snapshotters]
        if content_dirty and self.content is not None:
            jobs.append(content_gc())
        await asyncio.gather(*jobs)
        log.debug(
            "garbage collected: %d metadata objects, %d backend objects in %.3fs",
            stats.sweep.total,
            stats.backend_removed,
            time.perf_counter() - t0,
        )
        return stats
