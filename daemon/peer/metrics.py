"""The peer plugin's families, on the daemon's registry.

Per node (each daemon's own page): bytes fetched from peers against bytes
clients wrote through the Content API, bytes served to peers, and how long
fetches took by outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram

# Seconds: a small blob over loopback to a large layer from a slow peer.
FETCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

OK = "ok"
FAILED = "failed"


@dataclass
class PeerMetrics:
    registry: CollectorRegistry
    fetched: Counter = field(init=False)
    client_written: Counter = field(init=False)
    served: Counter = field(init=False)
    fetches: Counter = field(init=False)
    resumed: Counter = field(init=False)
    fetch_seconds: Histogram = field(init=False)

    def __post_init__(self) -> None:
        r = self.registry
        self.fetched = Counter(
            "berthd_content_peer_fetched_bytes",
            "Blob bytes this node fetched from other nodes of its cluster.",
            registry=r,
        )
        self.client_written = Counter(
            "berthd_content_client_written_bytes",
            "Blob bytes clients wrote to this node through the Content API.",
            registry=r,
        )
        self.served = Counter(
            "berthd_content_peer_served_bytes",
            "Blob bytes this node's peer server sent to other nodes.",
            registry=r,
        )
        self.fetches = Counter(
            "berthd_content_peer_fetches",
            "Blob fetches from other nodes, by outcome (ok, failed).",
            ("result",),
            registry=r,
        )
        self.resumed = Counter(
            "berthd_content_peer_fetch_resumes",
            "Times a fetch continued from another holder after one failed mid-transfer.",
            registry=r,
        )
        self.fetch_seconds = Histogram(
            "berthd_content_peer_fetch_duration_seconds",
            "Time to fetch one blob from other nodes, by outcome (ok, failed).",
            ("result",),
            buckets=FETCH_BUCKETS,
            registry=r,
        )
        for result in (OK, FAILED):
            self.fetches.labels(result)
            self.fetch_seconds.labels(result)
