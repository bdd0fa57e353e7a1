"""What a plugin instance hands the server when it has gRPC services to serve."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import grpc

Register = Callable[[grpc.aio.Server], None]


@dataclass(frozen=True)
class GrpcService:
    """Services (by full name) and the call that adds them to a server.

    ``on_serving`` runs once the server is up (e.g. to publish per-service
    health that follows a proxy plugin's state).
    """

    names: tuple[str, ...]
    register: Register
    on_serving: Callable[[], None] | None = None
