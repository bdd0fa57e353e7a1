"""The content plugin's own metric families (beside the harness's grpc_server_*).

Traffic is counted by the servicer as it happens; the size of the store is
measured when Prometheus scrapes (the endpoint runs collectors in a thread,
so walking the blob directory never blocks the event loop).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# blob count, blob bytes, ingests on disk
Usage = Callable[[], tuple[int, int, int]]
# free bytes, total bytes of the store's filesystem
DiskSpace = Callable[[], tuple[int, int]]


class ContentMetrics:
    def __init__(
        self,
        registry: CollectorRegistry,
        usage: Usage | None = None,
        disk_space: DiskSpace | None = None,
    ) -> None:
        self.written = Counter(
            "berthd_content_written_bytes",
            "Bytes received through Write streams.",
            registry=registry,
        )
        self.read = Counter(
            "berthd_content_read_bytes",
            "Bytes sent through Read streams.",
            registry=registry,
        )
        self.active_ingests = Gauge(
            "berthd_content_active_ingests",
            "Write streams holding an ingest right now.",
            registry=registry,
        )
        if usage is not None:
            registry.register(UsageCollector(usage))
        if disk_space is not None:
            registry.register(DiskSpaceCollector(disk_space))


class UsageCollector(Collector):
    def __init__(self, usage: Usage) -> None:
        self.usage = usage

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily("berthd_content_blobs", "Committed blobs in the store."),
            GaugeMetricFamily("berthd_content_blob_bytes", "Total size of the committed blobs."),
            GaugeMetricFamily("berthd_content_ingests", "Unfinished ingests kept on disk."),
        )

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        blobs, size, ingests = self.usage()
        fams = self._families()
        for fam, value in zip(fams, (blobs, size, ingests), strict=True):
            fam.add_metric([], value)
        return iter(fams)


class DiskSpaceCollector(Collector):
    """The room left for ingests, so a full disk can be seen coming (a write
    that meets it fails with ResourceExhausted)."""

    def __init__(self, disk_space: DiskSpace) -> None:
        self.disk_space = disk_space

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "berthd_content_store_free_bytes",
                "Bytes free on the content store's filesystem.",
            ),
            GaugeMetricFamily(
                "berthd_content_store_capacity_bytes",
                "Size of the content store's filesystem.",
            ),
        )

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        fams = self._families()
        for fam, value in zip(fams, self.disk_space(), strict=True):
            fam.add_metric([], value)
        return iter(fams)
