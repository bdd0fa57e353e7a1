"""Metadata and GC metric families, registered on a registry passed in.

``berthd_metadata_objects`` is computed at scrape time from one read
transaction.  Scrapes run off the event loop (the metrics endpoint renders
in a worker thread), so the collector hands the read to the loop and waits
for it; a scrape that happens on the loop thread itself gets the counts of
the previous scrape rather than blocking the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections import Counter as Tally
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from daemon.metadata.collector import GCStats
from daemon.metadata.gc import Kind
from daemon.metadata.store import (
    BLOBS,
    CONTAINERS,
    IMAGES,
    INGESTS,
    LEASES,
    NAMESPACES,
    SNAPSHOTS,
    MetadataStore,
    Table,
    Tx,
)

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT = 5.0

_KINDS: tuple[tuple[str, Table[Any]], ...] = (
    ("images", IMAGES),
    ("containers", CONTAINERS),
    ("leases", LEASES),
    ("blobs", BLOBS),
    ("ingests", INGESTS),
)

Counts = dict[tuple[str, str], int]


def count_objects(tx: Tx) -> Counts:
    """Objects per (kind, namespace); snapshots as ``snapshots/<snapshotter>``."""
    out: Tally[tuple[str, str]] = Tally()
    for ns in tx.scan(NAMESPACES):
        for kind, _ in _KINDS:
            out[(kind, ns.name)] += 0
    for kind, table in _KINDS:
        for rec in tx.scan(table):
            out[(kind, rec.namespace)] += 1
    for s in tx.scan(SNAPSHOTS):
        out[(f"snapshots/{s.snapshotter}", s.namespace)] += 1
    return dict(out)


class ObjectsCollector:
    """A custom collector for ``berthd_metadata_objects``."""

    def __init__(self, store: MetadataStore, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.loop = loop
        self._last: Counts = {}

    def _counts(self) -> Counts:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            return self._last
        fut = asyncio.run_coroutine_threadsafe(self.store.view(count_objects), self.loop)
        try:
            self._last = fut.result(SCRAPE_TIMEOUT)
        except (concurrent.futures.TimeoutError, Exception) as e:
            fut.cancel()
            log.warning("metadata metrics: counting objects failed: %s", e)
        return self._last

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "berthd_metadata_objects",
            "Objects in the metadata store by kind and namespace.",
            labels=("kind", "namespace"),
        )

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "berthd_metadata_objects",
            "Objects in the metadata store by kind and namespace.",
            labels=("kind", "namespace"),
        )
        for (kind, ns), n in sorted(self._counts().items()):
            family.add_metric((kind, ns), n)
        yield family


class GCMetrics:
    """Collections, their duration and what they removed."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter(
            "berthd_gc_runs", "Garbage collections, by result.", ("result",), registry=registry
        )
        self.duration = Histogram(
            "berthd_gc_duration_seconds",
            "Duration of garbage collections (metadata sweep and backend cleanup), in seconds.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.removed = Counter(
            "berthd_gc_removed_objects",
            "Objects garbage collection removed: metadata records by kind, and backend "
            "objects (kind=backend: blobs, ingests and snapshots freed in the plugins).",
            ("kind",),
            registry=registry,
        )
        self.backend_failures = Counter(
            "berthd_gc_backend_failures",
            "Backend cleanups a garbage collection gave up on (plugin down, failing or "
            "hung), by backend; they are retried at the next collection.",
            ("backend",),
            registry=registry,
        )
        for result in ("ok", "error"):
            self.runs.labels(result)
        for kind in (*(k.name.lower() for k in Kind), "backend"):
            self.removed.labels(kind)

    def observe(self, stats: GCStats | None, elapsed: float) -> None:
        """For ``GCScheduler(on_collected=...)``."""
        self.duration.observe(elapsed)
        if stats is None:
            self.runs.labels("error").inc()
            return
        self.runs.labels("ok").inc()
        for kind, n in stats.sweep.removed.items():
            self.removed.labels(kind.name.lower()).inc(n)
        if stats.backend_removed:
            self.removed.labels("backend").inc(stats.backend_removed)
        for backend in stats.failed:
            self.backend_failures.labels(backend).inc()


def register(registry: CollectorRegistry, store: MetadataStore) -> GCMetrics:
    """Register the metadata families on ``registry`` (call from the event loop)."""
    registry.register(ObjectsCollector(store, asyncio.get_running_loop()))
    return GCMetrics(registry)
