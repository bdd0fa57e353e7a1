"""The diff plugin's own metric families, registered on the process's registry.

``media_type`` label values are the known layer media types or "other", so
a client cannot grow the label set.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Layer work spans milliseconds (a few files) to minutes (GiB layers).
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class DiffMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.layers_applied = Counter(
            "berthd_diff_layers_applied",
            "Layers applied, by media type and result",
            ["media_type", "result"],
            registry=registry,
        )
        self.layers_diffed = Counter(
            "berthd_diff_layers_diffed",
            "Layers computed by Diff, by media type and result",
            ["media_type", "result"],
            registry=registry,
        )
        self.compressed_bytes = Counter(
            "berthd_diff_apply_read_bytes",
            "Blob bytes read from the content store by Apply",
            registry=registry,
        )
        self.uncompressed_bytes = Counter(
            "berthd_diff_applied_bytes",
            "Uncompressed layer bytes applied",
            registry=registry,
        )
        self.diff_bytes = Counter(
            "berthd_diff_written_bytes",
            "Layer blob bytes written to the content store by Diff",
            registry=registry,
        )
        self.apply_seconds = Histogram(
            "berthd_diff_apply_duration_seconds",
            "Time to apply one layer",
            ["media_type"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.diff_seconds = Histogram(
            "berthd_diff_diff_duration_seconds",
            "Time to compute and write one layer",
            ["media_type"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "berthd_diff_operations_in_flight",
            "Apply and Diff calls in progress",
            ["operation"],
            registry=registry,
        )

    def applied(self, media_type: str, ok: bool, seconds: float, read_bytes: int) -> None:
        self.layers_applied.labels(media_type, "ok" if ok else "error").inc()
        self.apply_seconds.labels(media_type).observe(seconds)
        self.compressed_bytes.inc(read_bytes)

    def diffed(self, media_type: str, ok: bool, seconds: float, written: int) -> None:
        self.layers_diffed.labels(media_type, "ok" if ok else "error").inc()
        self.diff_seconds.labels(media_type).observe(seconds)
        self.diff_bytes.inc(written)
