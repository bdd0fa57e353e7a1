"""The diff service on the daemon socket, relayed to proxy plugins.

The service is a transparent relay built from its descriptor: every method's
raw request goes to a proxy plugin chosen by a router and its raw responses
come back, with the caller's metadata (namespace) and deadline; errors come
back as typed errors (see ``daemon.proxy``).  As in containerd's
services/diff/local.go, requests go through an ordered list of differs where
NotImplemented falls through to the next (the diff-service ``default`` key).

Content and snapshots are not relayed: like containerd, berthd serves them
through its metadata layer (``daemon.metadata``), which namespaces them and
reaches the plugins through their ``ProxyConnection``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from google.protobuf import descriptor

from api import errdefs
from api.containerd.services.diff.v1 import diff_pb2
from daemon import health as daemon_health
from daemon import registry
from daemon.proxy import Context, ProxyConnection
from daemon.registry import InitContext, Registration
from daemon.service import GrpcService
from services.harness.health import HealthServicer

DIFF_SERVICE = diff_pb2.DESCRIPTOR.services_by_name["Diff"]


class Router(Protocol):
    """Relays raw calls; ``method`` is the full path ("/pkg.Service/Method")."""

    async def unary(self, method: str, request: bytes, ctx: Context) -> bytes: ...

    def unary_stream(self, method: str, request: bytes, ctx: Context) -> AsyncIterator[bytes]: ...

    async def stream_unary(
        self, method: str, requests: AsyncIterator[bytes], ctx: Context
    ) -> bytes: ...

    def stream_stream(
        self, method: str, requests: AsyncIterator[bytes], ctx: Context
    ) -> AsyncIterator[bytes]: ...

    @property
    def connections(self) -> Sequence[ProxyConnection]: ...


def relay_handler(service: descriptor.ServiceDescriptor, router: Router) -> grpc.GenericRpcHandler:
    """A handler serving every method of ``service`` through ``router``, bytes in, bytes out."""
    handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {}
    for m in service.methods:
        path = f"/{service.full_name}/{m.name}"
        handlers[m.name] = _method_handler(path, m.client_streaming, m.server_streaming, router)
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


def _method_handler(
    path: str, client_streaming: bool, server_streaming: bool, router: Router
) -> grpc.RpcMethodHandler[bytes, bytes]:
    if client_streaming and server_streaming:

        def bidi(requests: AsyncIterator[bytes], ctx: Context) -> AsyncIterator[bytes]:
            return router.stream_stream(path, requests, ctx)

        return grpc.stream_stream_rpc_method_handler(bidi)
    if client_streaming:

        async def client_stream(requests: AsyncIterator[bytes], ctx: Context) -> bytes:
            return await router.stream_unary(path, requests, ctx)

        return grpc.stream_unary_rpc_method_handler(client_stream)
    if server_streaming:

        def server_stream(request: bytes, ctx: Context) -> AsyncIterator[bytes]:
            return router.unary_stream(path, request, ctx)

        return grpc.unary_stream_rpc_method_handler(server_stream)

    async def unary(request: bytes, ctx: Context) -> bytes:
        return await router.unary(path, request, ctx)

    return grpc.unary_unary_rpc_method_handler(unary)


class PickRouter:
    """Sends each call to the connection ``pick`` chooses for it."""

    def __init__(
        self,
        pick: Callable[[str, bytes | None], ProxyConnection],
        connections: Sequence[ProxyConnection],
    ) -> None:
        self._pick = pick
        self._connections = tuple(connections)

    @property
    def connections(self) -> Sequence[ProxyConnection]:
        return self._connections

    async def unary(self, method: str, request: bytes, ctx: Context) -> bytes:
        return await self._pick(method, request).unary(method, request, ctx)

    def unary_stream(self, method: str, request: bytes, ctx: Context) -> AsyncIterator[bytes]:
        return self._pick(method, request).unary_stream(method, request, ctx)

    async def stream_unary(
        self, method: str, requests: AsyncIterator[bytes], ctx: Context
    ) -> bytes:
        return await self._pick(method, None).stream_unary(method, requests, ctx)

    def stream_stream(
        self, method: str, requests: AsyncIterator[bytes], ctx: Context
    ) -> AsyncIterator[bytes]:
        return self._pick(method, None).stream_stream(method, requests, ctx)


class DifferRouter(PickRouter):
    """Tries each differ in order; NotImplemented moves on to the next."""

    def __init__(self, differs: Sequence[ProxyConnection]) -> None:
        super().__init__(lambda method, request: differs[0], differs)
        self.differs = tuple(differs)

    async def unary(self, method: str, request: bytes, ctx: Context) -> bytes:
        last: errdefs.ErrdefsError = errdefs.NotImplemented("no differ")
        for d in self.differs:
            try:
                return await d.unary(method, request, ctx)
            except errdefs.NotImplemented as e:
                last = e
        raise last


# --- registrations -----------------------------------------------------------------


def _connections(ic: InitContext, type_: str) -> dict[str, ProxyConnection]:
    """The initialised plugins of ``type_`` that are proxy connections, by id."""
    out = {}
    for id_, p in ic.by_type(type_).items():
        if p.error is None and isinstance(p.instance, ProxyConnection):
            out[id_] = p.instance
    return out


@dataclass(frozen=True)
class DiffServiceConfig:
    # Differ ids in order of preference; empty means every loaded differ in
    # config order (containerd's default, ["walking"], names its built-in one).
    default: tuple[str, ...] = ()


async def _diff_service(ic: InitContext) -> DifferRouter:
    conns = _connections(ic, registry.DIFF)
    cfg: DiffServiceConfig = ic.config
    order = list(cfg.default) or list(conns)
    differs = []
    for name in order:
        if name not in conns:
            loaded = ic.by_type(registry.DIFF).get(name)
            if loaded is not None and loaded.error is not None:
                raise errdefs.FailedPrecondition(
                    f"could not load required differ due plugin init error: {name}: {loaded.error}"
                )
            raise errdefs.NotFound(f"needed differ not loaded: {name}")
        differs.append(conns[name])
    if not differs:
        raise errdefs.NotFound(f"no plugins registered for {registry.DIFF}")
    ic.meta.exports["order"] = ",".join(order)
    return DifferRouter(differs)


def _grpc_init(
    service_plugin: str, desc: descriptor.ServiceDescriptor
) -> Callable[[InitContext], Any]:
    async def init(ic: InitContext) -> GrpcService:
        router = ic.plugins.get_by_id(registry.SERVICE, service_plugin)
        assert isinstance(router, PickRouter)
        handler = relay_handler(desc, router)
        sync = daemon_health.follow(
            ic.extra("health", HealthServicer), desc.full_name, router.connections
        )
        return GrpcService(
            (desc.full_name,), lambda s: s.add_generic_rpc_handlers((handler,)), on_serving=sync
        )

    return init


REGISTRATIONS = (
    Registration(
        registry.SERVICE, "diff-service", _diff_service, (registry.DIFF,), DiffServiceConfig
    ),
    Registration(
        registry.GRPC, "diff", _grpc_init("diff-service", DIFF_SERVICE), (registry.SERVICE,)
    ),
)
