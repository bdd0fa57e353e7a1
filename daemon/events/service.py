"""The Events service on the daemon socket (gRPC) and the event intake shims
use over ttrpc (containerd's services/events)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import empty_pb2

from api import namespaces
from api.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from api.containerd.services.ttrpc.events.v1 import events_pb2 as ttrpc_events_pb2
from api.containerd.types import event_pb2
from api.ttrpc import service as ttrpc_service
from daemon.capabilities import TtrpcService
from daemon.events.exchange import Exchange

SERVICE_NAME = "containerd.services.events.v1.Events"
TTRPC_SERVICE_NAME = "containerd.services.events.ttrpc.v1.Events"

Context = grpc.aio.ServicerContext[Any, Any]


class EventsServicer(events_pb2_grpc.EventsServicer):
    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    async def Publish(
        self, request: events_pb2.PublishRequest, context: Context
    ) -> empty_pb2.Empty:
        ns = namespaces.required(context.invocation_metadata())
        await self.exchange.publish(ns, request.event, request.topic)
        return empty_pb2.Empty()

    async def Forward(
        self, request: events_pb2.ForwardRequest, context: Context
    ) -> empty_pb2.Empty:
        await self.exchange.forward(request.envelope)
        return empty_pb2.Empty()

    async def Subscribe(
        self, request: events_pb2.SubscribeRequest, context: Context
    ) -> AsyncIterator[event_pb2.Envelope]:
        async with self.exchange.subscribe(*request.filters) as sub:
            async for env in sub:
                yield env

    def register(self, server: grpc.aio.Server) -> None:
        events_pb2_grpc.add_EventsServicer_to_server(self, server)


class TTRPCEvents:
    """The ttrpc ``containerd.services.events.ttrpc.v1.Events`` service: shims
    forward their task events here, and they reach the gRPC subscribers."""

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    async def forward(
        self, request: ttrpc_events_pb2.ForwardRequest, ctx: ttrpc_service.Context
    ) -> empty_pb2.Empty:
        await self.exchange.forward(request.envelope)
        return empty_pb2.Empty()

    def service(self) -> TtrpcService:
        return TtrpcService(
            TTRPC_SERVICE_NAME,
            {"Forward": ttrpc_service.Method(ttrpc_events_pb2.ForwardRequest, self.forward)},
        )
