"""What a plugin instance can offer the daemon, recognised by interface.

As containerd's server (services/server/server.go at v1.7) serves every
plugin whose instance implements its grpc or ttrpc service interface and
closes every ``io.Closer``, berthd's server looks at each initialised
instance for these capabilities and knows no plugin by name:

- ``ServesGrpc``: services registered on the daemon's gRPC socket;
- ``ServesTtrpc``: services registered on the daemon's ttrpc socket;
- ``Closeable``: closed at shutdown, in reverse initialisation order;
- ``Readiness``: start-up waits (bounded) until it reports ready, e.g. a
  supervised proxy plugin whose process is still starting;
- ``Liveness``: an up/down state others can follow (per-service health).

An instance may offer any number of them; ``GrpcService`` and
``TtrpcService`` are ready-made values for plugins that only serve.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import grpc

from api.ttrpc.service import AnyMethod

Register = Callable[[grpc.aio.Server], None]


@dataclass(frozen=True)
class GrpcService:
    """gRPC services (by full name) and the call that adds them to a server.

    ``on_serving`` runs once the server is up (e.g. to publish per-service
    health that follows a proxy plugin's state).
    """

    names: tuple[str, ...]
    register: Register
    on_serving: Callable[[], None] | None = None

    def grpc_services(self) -> Sequence[GrpcService]:
        return (self,)


@dataclass(frozen=True)
class TtrpcService:
    """One ttrpc service: its full name and its methods by name."""

    name: str
    methods: Mapping[str, AnyMethod] = field(default_factory=dict)

    def ttrpc_services(self) -> Sequence[TtrpcService]:
        return (self,)


@runtime_checkable
class ServesGrpc(Protocol):
    def grpc_services(self) -> Sequence[GrpcService]:
        """The gRPC services to register on the daemon socket."""
        ...


@runtime_checkable
class ServesTtrpc(Protocol):
    def ttrpc_services(self) -> Sequence[TtrpcService]:
        """The ttrpc services to register on the daemon's ttrpc socket."""
        ...


@runtime_checkable
class Closeable(Protocol):
    async def close(self) -> None:
        """Release what the plugin holds; called once, at shutdown."""
        ...


@runtime_checkable
class Readiness(Protocol):
    @property
    def describe(self) -> str:
        """What is waited for, for the log line when it is late."""
        ...

    async def wait_ready(self) -> bool:
        """Return True once ready, False when it will not be soon (e.g. its
        process exited); the daemon bounds the wait."""
        ...


@runtime_checkable
class Liveness(Protocol):
    @property
    def up(self) -> bool: ...

    def on_change(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(up)`` at every up/down transition."""
        ...
