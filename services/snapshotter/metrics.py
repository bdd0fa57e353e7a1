"""Snapshotter metrics: snapshots per kind (counted at scrape time) and latencies.

Families (next to the harness's ``grpc_server_*``), labelled by the name each
snapshotter is served under (a process may serve several):

- ``berthd_snapshotter_snapshots{snapshotter,kind}`` — gauge, read from the
  snapshotter when scraped, so it is never stale and costs nothing between
  scrapes;
- ``berthd_snapshotter_commit_duration_seconds{snapshotter}`` and
  ``berthd_snapshotter_usage_duration_seconds{snapshotter}`` — histograms of
  the time Commit (which measures the layer) and Usage take, errors included.

No label ever carries a snapshot key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.snapshotter.snapshotter import Forwarding, Kind, Snapshotter, Usage

log = logging.getLogger(__name__)

# Commits measure a whole layer: allow for slow ones.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

KINDS = (Kind.ACTIVE, Kind.VIEW, Kind.COMMITTED)

Counts = Callable[[], Mapping[Kind, int]]


class _KindCollector(Collector):
    """Counts of every snapshotter the process serves, in one family."""

    def __init__(self) -> None:
        self.counts: dict[str, Counts] = {}

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "berthd_snapshotter_snapshots",
            "Snapshots held by the snapshotter, by kind.",
            labels=("snapshotter", "kind"),
        )

    def describe(self) -> Iterator[Metric]:
        # Lets the registry learn the name without counting at registration.
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for snapshotter, source in self.counts.items():
            try:
                counts = source()
            except Exception as e:
                log.warning("cannot count snapshots of %s: %s", snapshotter, e)
                continue
            for kind in KINDS:
                family.add_metric((snapshotter, str(kind)), counts.get(kind, 0))
        yield family


def counts_by_walking(snapshotter: Snapshotter, loop: asyncio.AbstractEventLoop) -> Counts:
    """Counts for any snapshotter, by walking it on ``loop`` from the scraping thread.

    The metrics endpoint collects in a worker thread; collecting on the loop's
    own thread is refused (it would wait on itself).
    """

    async def count() -> dict[Kind, int]:
        counts = dict.fromkeys(KINDS, 0)
        async for info in snapshotter.walk():
            counts[info.kind] = counts.get(info.kind, 0) + 1
        return counts

    def counts() -> Mapping[Kind, int]:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError("snapshot counts cannot be collected on the event loop thread")
        return asyncio.run_coroutine_threadsafe(count(), loop).result(timeout=10)

    return counts


class SnapshotterMetrics:
    """The families above, registered once on a process's registry.

    Each snapshotter the process serves gets its labelled share with ``add``.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._kinds = _KindCollector()
        registry.register(self._kinds)
        self._commit = Histogram(
            "berthd_snapshotter_commit_duration_seconds",
            "Time taken by Commit, including measuring the layer's usage.",
            ("snapshotter",),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self._usage = Histogram(
            "berthd_snapshotter_usage_duration_seconds",
            "Time taken by Usage.",
            ("snapshotter",),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )

    def add(self, snapshotter: str, counts: Counts) -> BackendMetrics:
        """The metrics of ``snapshotter``, whose snapshots ``counts`` counts."""
        if snapshotter in self._kinds.counts:
            raise ValueError(f"snapshotter {snapshotter!r} already has metrics")
        self._kinds.counts[snapshotter] = counts
        return BackendMetrics(
            snapshotter, self._commit.labels(snapshotter), self._usage.labels(snapshotter)
        )


@dataclass(frozen=True)
class BackendMetrics:
    """One snapshotter's share of ``SnapshotterMetrics``."""

    snapshotter: str
    commit_seconds: Histogram
    usage_seconds: Histogram


class Instrumented(Forwarding):
    """A Snapshotter that times ``inner``'s commits and usage queries."""

    def __init__(self, inner: Snapshotter, metrics: BackendMetrics) -> None:
        super().__init__(inner)
        self.metrics = metrics

    async def usage(self, key: str) -> Usage:
        start = time.perf_counter()
        try:
            return await self.inner.usage(key)
        finally:
            self.metrics.usage_seconds.observe(time.perf_counter() - start)

    async def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        start = time.perf_counter()
        try:
            await self.inner.commit(name, key, labels)
        finally:
            self.metrics.commit_seconds.observe(time.perf_counter() - start)
