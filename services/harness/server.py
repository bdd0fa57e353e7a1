"""The process lifecycle every berthd process shares.

A ``PluginServer`` owns one grpc.aio server on a unix socket, its health
service, its metrics registry and (optionally) the HTTP metrics endpoint.
Lifecycle: ``start()`` prepares the socket and begins serving; ``serve()``
runs until SIGTERM/SIGINT, then stops accepting, lets in-flight calls finish
within ``grace`` seconds and removes the socket; a second signal cancels what
is still running at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from api.grpc.health.v1 import health_pb2_grpc
from api.h2.server import Server

# Re-exported: the socket helpers moved to api.sockets (grpc-free, shared with ttrpc).
from api.sockets import AddressInUse as AddressInUse
from api.sockets import prepare_socket as prepare_socket
from api.sockets import remove_stale_socket as remove_stale_socket
from services.harness.health import SERVING, HealthServicer
from services.harness.interceptors import EdgeServer
from services.harness.memory import HeapKeeper
from services.harness.metrics import GrpcServerMetrics, MetricsEndpoint, new_registry
from services.harness.notify import sd_notify

log = logging.getLogger(__name__)

MAX_MESSAGE_SIZE = 16 << 20

CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_SIZE),
    ("grpc.max_receive_message_length", MAX_MESSAGE_SIZE),
)


@dataclass(frozen=True)
class ServerConfig:
    address: str
    metrics_address: str | None = None
    uid: int = -1  # -1: leave as created (containerd's [grpc] uid/gid)
    gid: int = -1
    socket_mode: int = 0o660
    dir_mode: int = 0o711
    grace: float = 10.0
    max_recv_message_size: int = MAX_MESSAGE_SIZE
    max_send_message_size: int = MAX_MESSAGE_SIZE


Register = Callable[[grpc.aio.Server], None]


def new_server(cfg: ServerConfig) -> Any:
    """The gRPC server for ``cfg``'s socket: berthd's own (``api.h2``), or
    grpc.aio's when ``BERTHD_GRPC_SERVER=grpcio`` asks for it."""
    if os.environ.get("BERTHD_GRPC_SERVER", "") == "grpcio":
        return grpc.aio.server(
            options=[
                ("grpc.max_send_message_length", cfg.max_send_message_size),
                ("grpc.max_receive_message_length", cfg.max_recv_message_size),
                ("grpc.so_reuseport", 0),
            ],
        )
    return Server(
        max_receive_message_length=cfg.max_recv_message_size,
        max_send_message_length=cfg.max_send_message_size,
    )


class PluginServer:
    def __init__(self, name: str, config: ServerConfig) -> None:
        self.name = name
        self.config = config
        self.registry = new_registry()
        self.grpc_metrics = GrpcServerMetrics(self.registry)
        self.health = HealthServicer()
        self.heap = HeapKeeper()
        self._registrations: list[tuple[str, Register]] = []
        self._server: Any = None
        self._metrics: MetricsEndpoint | None = None
        self._stopped = asyncio.Event()
        self._force = asyncio.Event()
        self.on_stop: list[Callable[[], Awaitable[None]]] = []

    def add_service(self, service_name: str, register: Register) -> None:
        """Serve a servicer; ``register`` is the generated add_*Servicer_to_server bound to it."""
        self._registrations.append((service_name, register))

    @property
    def metrics_endpoint(self) -> MetricsEndpoint | None:
        return self._metrics

    async def start(self) -> None:
        cfg = self.config
        prepare_socket(cfg.address, cfg.dir_mode)
        server = new_server(cfg)
        edge: Any = EdgeServer(server, self.grpc_metrics, self.heap.touch)
        # Health checks are not work: the daemon's probes (every 0.5 s) must
        # not keep the heap keeper from ever seeing a quiet second.
        quiet_edge: Any = EdgeServer(server, self.grpc_metrics)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, quiet_edge)
        for service_name, register in self._registrations:
            register(edge)
            self.health.set(service_name, SERVING)
        server.add_insecure_port("unix://" + os.path.abspath(cfg.address))
        await server.start()
        os.chmod(cfg.address, cfg.socket_mode)
        if cfg.uid >= 0 or cfg.gid >= 0:
            os.chown(cfg.address, cfg.uid, cfg.gid)
        self._server = server
        if cfg.metrics_address:
            self._metrics = MetricsEndpoint(self.registry, cfg.metrics_address)
            await self._metrics.start()
        log.info("%s serving on %s", self.name, cfg.address)
        # Starting is a burst too: what it freed goes back once it is over.
        self.heap.touch()
        ready = "READY=1"
        if self._metrics is not None:
            # The address bound (port 0 asks for any): the supervisor learns it here.
            host, port = self._metrics.bound
            ready += f"\nMETRICS_ADDRESS={host}:{port}"
        sd_notify(ready)

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, give in-flight calls ``grace`` seconds, remove the socket.

        ``force()`` during the drain cancels the calls still running; the
        shutdown hooks and socket removal happen either way.
        """
        if self._server is None:
            return
        server, self._server = self._server, None
        sd_notify("STOPPING=1")
        self.health.shutdown()
        drain = asyncio.ensure_future(server.stop(self.config.grace if grace is None else grace))
        forced = asyncio.ensure_future(self._force.wait())
        await asyncio.wait({drain, forced}, return_when=asyncio.FIRST_COMPLETED)
        forced.cancel()
        if not drain.done():
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
            await server.stop(0)
        for hook in self.on_stop:
            try:
                await hook()
            except Exception:
                log.exception("%s: shutdown hook failed", self.name)
        if self._metrics is not None:
            await self._metrics.stop()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.config.address)
        self.heap.close()
        self._stopped.set()
        log.info("%s stopped", self.name)

    def force(self) -> None:
        """Cut a graceful stop's drain short (the second signal)."""
        self._force.set()

    async def serve(self) -> None:
        """Run until a signal stops the server (see the module docstring)."""
        loop = asyncio.get_running_loop()
        signalled = asyncio.Event()
        stopping = False

        def on_signal(signum: int) -> None:
            nonlocal stopping
            if not stopping:
                stopping = True
                log.info("%s: %s received, shutting down", self.name, signal.Signals(signum).name)
                signalled.set()
            else:
                log.warning("%s: second signal, forcing exit", self.name)
                self.force()

        # Handlers before start(): start() announces READY=1, and a SIGTERM
        # that follows at once must already stop us gracefully.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            await self.start()
            waiter = asyncio.ensure_future(self._stopped.wait())
            sig_wait = asyncio.ensure_future(signalled.wait())
            await asyncio.wait({waiter, sig_wait}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            sig_wait.cancel()
            if not self._stopped.is_set():
                await self.stop()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
