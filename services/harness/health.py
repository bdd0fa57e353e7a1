"""grpc.health.v1: every process answers health checks for itself and its services."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from api import errdefs
from api.grpc.health.v1 import health_pb2, health_pb2_grpc

Status: TypeAlias = health_pb2.HealthCheckResponse.ServingStatus.ValueType

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthServicer(health_pb2_grpc.HealthServicer):
    """Status per service name; "" is the process as a whole."""

    def __init__(self) -> None:
        self._status: dict[str, Status] = {"": SERVING}
        self._changed = asyncio.Event()

    def set(self, service: str, status: Status) -> None:
        self._status[service] = status
        self._changed.set()
        self._changed = asyncio.Event()

    def shutdown(self) -> None:
        for service in list(self._status):
            self.set(service, NOT_SERVING)

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        status = self._status.get(request.service)
        if status is None:
            # A typed error, not context.abort: the edge records the call
            # before the status leaves (abort sends it first), so a scrape
            # right after the answer already counts it.
            raise errdefs.NotFound(f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        last: Status | None = None
        while True:
            status = self._status.get(request.service, SERVICE_UNKNOWN)
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            await self._changed.wait()
