"""The event plugins: ``io.containerd.event.v1 exchange`` and
``io.containerd.grpc.v1 events`` (containerd's events/exchange and services/events)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from daemon import registry
from daemon.capabilities import GrpcService, TtrpcService
from daemon.events.exchange import Exchange
from daemon.events.service import SERVICE_NAME, EventsServicer, TTRPCEvents
from daemon.registry import InitContext, Registration


@dataclass(frozen=True)
class EventsService(GrpcService):
    """The gRPC Events service, plus the ttrpc intake shims forward task events to
    (containerd registers both from this one plugin)."""

    ttrpc: TTRPCEvents | None = None

    def ttrpc_services(self) -> Sequence[TtrpcService]:
        return (self.ttrpc.service(),) if self.ttrpc is not None else ()


async def _init_exchange(ic: InitContext) -> Exchange:
    return Exchange()


async def _init_grpc(ic: InitContext) -> EventsService:
    exchange = ic.plugins.get_by_id(registry.EVENT, "exchange")
    assert isinstance(exchange, Exchange)
    servicer = EventsServicer(exchange)
    return EventsService((SERVICE_NAME,), servicer.register, ttrpc=TTRPCEvents(exchange))


REGISTRATIONS = (
    Registration(registry.EVENT, "exchange", _init_exchange),
    Registration(registry.GRPC, "events", _init_grpc, (registry.EVENT,)),
)
