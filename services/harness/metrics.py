"""Prometheus plumbing shared by every process.

Each process object owns one ``CollectorRegistry`` (tests stay isolated); the
gRPC families use go-grpc-prometheus's names and labels so dashboards built
for containerd keep working.  The page is served at ``/v1/metrics`` like
containerd's metrics address.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample

log = logging.getLogger(__name__)

METRICS_PATH = "/v1/metrics"

# go-grpc-prometheus's default histogram buckets.
HANDLING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# Go's codes.Code.String(), which go-grpc-prometheus uses as grpc_code.
GO_CODE_NAMES = {
    "OK": "OK",
    "CANCELLED": "Canceled",
    "UNKNOWN": "Unknown",
    "INVALID_ARGUMENT": "InvalidArgument",
    "DEADLINE_EXCEEDED": "DeadlineExceeded",
    "NOT_FOUND": "NotFound",
    "ALREADY_EXISTS": "AlreadyExists",
    "PERMISSION_DENIED": "PermissionDenied",
    "RESOURCE_EXHAUSTED": "ResourceExhausted",
    "FAILED_PRECONDITION": "FailedPrecondition",
    "ABORTED": "Aborted",
    "OUT_OF_RANGE": "OutOfRange",
    "UNIMPLEMENTED": "Unimplemented",
    "INTERNAL": "Internal",
    "UNAVAILABLE": "Unavailable",
    "DATA_LOSS": "DataLoss",
    "UNAUTHENTICATED": "Unauthenticated",
}


def new_registry() -> CollectorRegistry:
    """A registry with the process_* and python_* collectors on it."""
    registry = CollectorRegistry(auto_describe=True)
    process_collector.ProcessCollector(registry=registry)
    platform_collector.PlatformCollector(registry=registry)
    gc_collector.GCCollector(registry=registry)
    return registry


_LABELS = ("grpc_type", "grpc_service", "grpc_method")
_STARTED = ("grpc_server_started", "RPCs started on the server.")
_HANDLED = (
    "grpc_server_handled",
    "RPCs completed on the server, regardless of success or failure.",
)
_RECEIVED = ("grpc_server_msg_received", "Stream messages received on the server.")
_SENT = ("grpc_server_msg_sent", "Stream messages sent by the server.")
_HANDLING = (
    "grpc_server_handling_seconds",
    "Response latency of RPCs handled by the server, in seconds.",
)


class MethodCounts:
    """The counts of one method (``labels``: type, service, method) in the
    gRPC families, as plain numbers: every call changes five of them, which
    through prometheus_client's locked values cost more than a metadata
    call's own work.  Only the event loop's thread changes them; a scrape
    reads them as they are."""

    __slots__ = (
        "buckets",
        "created",
        "handled",
        "labels",
        "received",
        "seconds",
        "sent",
        "started",
    )

    def __init__(self, labels: tuple[str, str, str]) -> None:
        self.labels = labels
        self.created = time.time()
        self.started = 0
        self.received = 0
        self.sent = 0
        # Go code name -> calls that ended with it.
        self.handled: dict[str, int] = {}
        # Calls per bucket of HANDLING_BUCKETS, not cumulative; the last is +Inf's own.
        self.buckets = [0] * (len(HANDLING_BUCKETS) + 1)
        self.seconds = 0.0

    def done(self, code: str, elapsed: float) -> None:
        """A call ended with ``code`` (Go's name of it) after ``elapsed`` seconds."""
        self.handled[code] = self.handled.get(code, 0) + 1
        self.buckets[bisect.bisect_left(HANDLING_BUCKETS, elapsed)] += 1
        self.seconds += elapsed


class GrpcServerMetrics:
    """go-grpc-prometheus's server families, kept per method in
    ``MethodCounts`` and handed to ``registry`` when it is scraped.

    A series shows once it counted something, as a labelled child of
    prometheus_client shows once used; its ``_created`` sample is when its
    method's counts began (``MethodCounts.created``).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._methods: dict[tuple[str, str, str], MethodCounts] = {}
        registry.register(self)

    def method(self, kind: str, service: str, method: str) -> MethodCounts:
        labels = (kind, service, method)
        counts = self._methods.get(labels)
        if counts is None:
            counts = self._methods[labels] = MethodCounts(labels)
        return counts

    def describe(self) -> list[Metric]:
        return list(_families())

    def collect(self) -> list[Metric]:
        started, handled, received, sent, handling = _families()
        for m in list(self._methods.values()):
            labels, created = list(m.labels), m.created
            if m.started:
                started.add_metric(labels, m.started, created=created)
            for code, count in list(m.handled.items()):
                handled.add_metric([*labels, code], count, created=created)
            if m.received:
                received.add_metric(labels, m.received, created=created)
            if m.sent:
                sent.add_metric(labels, m.sent, created=created)
            buckets = list(m.buckets)
            if any(buckets):
                cumulative = list(zip(_BOUND_NAMES, itertools.accumulate(buckets), strict=True))
                handling.add_metric(labels, cumulative, m.seconds)
                by_name = dict(zip(_LABELS, labels, strict=True))
                handling.samples.append(Sample(_HANDLING[0] + "_created", by_name, created))
        return [started, handled, received, sent, handling]


# The histogram's ``le`` labels, as Go prints the bounds.
_BOUND_NAMES = (*(repr(float(b)) for b in HANDLING_BUCKETS), "+Inf")


def _families() -> tuple[
    CounterMetricFamily,
    CounterMetricFamily,
    CounterMetricFamily,
    CounterMetricFamily,
    HistogramMetricFamily,
]:
    return (
        CounterMetricFamily(*_STARTED, labels=_LABELS),
        CounterMetricFamily(*_HANDLED, labels=(*_LABELS, "grpc_code")),
        CounterMetricFamily(*_RECEIVED, labels=_LABELS),
        CounterMetricFamily(*_SENT, labels=_LABELS),
        HistogramMetricFamily(*_HANDLING, labels=_LABELS),
    )


class MetricsEndpoint:
    """A minimal HTTP/1.1 server answering GET /v1/metrics from one registry."""

    def __init__(self, registry: CollectorRegistry, address: str) -> None:
        self.registry = registry
        self.address = address
        self._server: asyncio.Server | None = None

    @property
    def bound(self) -> tuple[str, int]:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def start(self) -> None:
        host, _, port = self.address.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        self._server = await asyncio.start_server(self._handle, host, int(port))
        log.info("metrics served at http://%s:%d%s", *self.bound, METRICS_PATH)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, target, *_ = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            path = target.split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                status, ctype, body = (
                    "405 Method Not Allowed",
                    "text/plain",
                    b"method not allowed\n",
                )
            elif path != METRICS_PATH:
                status, ctype, body = "404 Not Found", "text/plain", b"404 page not found\n"
            else:
                # Collectors may touch the filesystem: keep the loop free.
                body = await asyncio.to_thread(generate_latest, self.registry)
                status, ctype = "200 OK", CONTENT_TYPE_LATEST
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, ValueError):
            pass
        except Exception:
            log.exception("metrics request failed")
        finally:
            writer.close()
