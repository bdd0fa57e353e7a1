"""grpc.health.v1 on the daemon socket, with per-service status that follows the plugins.

The health service itself is the harness's (every berthd process serves
it); this module registers it as containerd's ``healthcheck`` plugin and
lets a federated service report NOT_SERVING while none of the proxy plugins
behind it is up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from daemon import registry
from daemon.capabilities import GrpcService, Liveness
from daemon.registry import InitContext, Registration
from services.harness.health import NOT_SERVING, SERVING, HealthServicer

SERVICE_NAME = "grpc.health.v1.Health"


def follow(health: HealthServicer, service: str, conns: Sequence[Liveness]) -> Callable[[], None]:
    """Keep ``service``'s status in step with ``conns`` (SERVING while any is up);
    returns the sync function."""

    def sync(_: bool = False) -> None:
        health.set(service, SERVING if any(c.up for c in conns) else NOT_SERVING)

    for c in conns:
        c.on_change(sync)
    return sync


async def _init(ic: InitContext) -> GrpcService:
    ic.resource(HealthServicer)  # served by the server itself
    return GrpcService((), lambda server: None)


REGISTRATIONS = (Registration(registry.GRPC, "healthcheck", _init),)
