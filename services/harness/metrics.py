"""Prometheus plumbing shared by every process.

Each process object owns one ``CollectorRegistry`` (tests stay isolated); the
gRPC families use go-grpc-prometheus's names and labels so dashboards built
for containerd keep working.  The page is served at ``/v1/metrics`` like
containerd's metrics address.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)

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


@dataclass
class GrpcServerMetrics:
    registry: CollectorRegistry
    started: Counter = field(init=False)
    handled: Counter = field(init=False)
    received: Counter = field(init=False)
    sent: Counter = field(init=False)
    handling: Histogram = field(init=False)

    def __post_init__(self) -> None:
        labels = ("grpc_type", "grpc_service", "grpc_method")
        r = self.registry
        self.started = Counter(
            "grpc_server_started", "RPCs started on the server.", labels, registry=r
        )
        self.handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, regardless of success or failure.",
            (*labels, "grpc_code"),
            registry=r,
        )
        self.received = Counter(
            "grpc_server_msg_received",
            "Stream messages received on the server.",
            labels,
            registry=r,
        )
        self.sent = Counter(
            "grpc_server_msg_sent", "Stream messages sent by the server.", labels, registry=r
        )
        self.handling = Histogram(
            "grpc_server_handling_seconds",
            "Response latency of RPCs handled by the server, in seconds.",
            labels,
            buckets=HANDLING_BUCKETS,
            registry=r,
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
