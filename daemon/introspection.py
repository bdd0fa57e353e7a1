"""Introspection: which plugins the daemon loaded, and who the daemon is.

``ctr plugins ls`` lists every plugin in initialisation order with its type,
id, platforms and status (ok, or "skip"/"error" from its init error);
``-d`` adds requires, exports (a proxy plugin's address) and the init error.
``Server`` answers the daemon's persistent uuid (created under the plugin's
root on first use, as containerd's services/introspection/local.go does), its
pid and pid namespace.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import empty_pb2

from api import errdefs, errgrpc, filters
from api.containerd.services.introspection.v1 import introspection_pb2, introspection_pb2_grpc
from api.containerd.types import platform_pb2
from api.google.rpc import status_pb2
from daemon import registry
from daemon.capabilities import GrpcService
from daemon.registry import InitContext, Plugin, PluginSet, Registration

SERVICE_NAME = "containerd.services.introspection.v1.Introspection"


def init_error(err: BaseException) -> status_pb2.Status:
    """containerd's conversion: typed errors keep their code, others are UNKNOWN."""
    if isinstance(err, errdefs.ErrdefsError):
        code, message = errgrpc.to_status(err)
        return status_pb2.Status(code=code.value[0], message=message)
    return status_pb2.Status(code=grpc.StatusCode.UNKNOWN.value[0], message=str(err))


def to_proto(p: Plugin) -> introspection_pb2.Plugin:
    out = introspection_pb2.Plugin(
        type=p.registration.type,
        id=p.registration.id,
        requires=list(p.registration.requires),
        platforms=[
            platform_pb2.Platform(os=x.os, architecture=x.architecture, variant=x.variant)
            for x in p.meta.platforms
        ],
        exports=dict(p.meta.exports),
        capabilities=list(p.meta.capabilities),
    )
    if p.error is not None:
        out.init_err.CopyFrom(init_error(p.error))
    return out


class Introspector:
    """The daemon-side answers, over the live plugin set."""

    def __init__(self, plugins: PluginSet, root: str) -> None:
        self.plugins = plugins
        self.root = root
        self._lock = asyncio.Lock()

    def list(self, exprs: Sequence[str]) -> list[introspection_pb2.Plugin]:
        """Plugins matching any of ``exprs`` (InvalidArgument on a bad filter)."""
        match = filters.parse_all(*exprs)
        return [
            to_proto(p)
            for p in self.plugins.all()
            if match.match(filters.adapt_plugin(p.registration.type, p.registration.id))
        ]

    def info(self, type_: str, id_: str, options_set: bool) -> introspection_pb2.Plugin:
        p = self.plugins.find(type_, id_)
        if p is None:
            raise errdefs.NotFound(f"plugin {type_}.{id_}")
        if options_set:
            raise errdefs.NotImplemented(f"plugin {type_}.{id_} does not answer info requests")
        return to_proto(p)

    def _uuid_path(self) -> str:
        return os.path.join(self.root, "uuid")

    def _read_or_create_uuid(self) -> str:
        path = self._uuid_path()
        try:
            with open(path) as f:
                text = f.read().strip()
        except FileNotFoundError:
            text = ""
        if text:
            try:
                return str(uuid.UUID(text))
            except ValueError:
                raise errdefs.DataLoss(f"{path}: invalid uuid {text!r}") from None
        value = str(uuid.uuid4())
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(value)
        os.replace(tmp, path)
        return value

    async def server(self) -> introspection_pb2.ServerResponse:
        async with self._lock:
            value = await asyncio.to_thread(self._read_or_create_uuid)
        try:
            pidns = os.stat("/proc/self/ns/pid").st_ino
        except OSError:
            pidns = 0
        return introspection_pb2.ServerResponse(uuid=value, pid=os.getpid(), pidns=pidns)


class IntrospectionServicer(introspection_pb2_grpc.IntrospectionServicer):
    def __init__(self, local: Introspector) -> None:
        self.local = local

    async def Plugins(
        self, request: introspection_pb2.PluginsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> introspection_pb2.PluginsResponse:
        return introspection_pb2.PluginsResponse(plugins=self.local.list(list(request.filters)))

    async def Server(
        self, request: empty_pb2.Empty, context: grpc.aio.ServicerContext[Any, Any]
    ) -> introspection_pb2.ServerResponse:
        return await self.local.server()

    async def PluginInfo(
        self,
        request: introspection_pb2.PluginInfoRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> introspection_pb2.PluginInfoResponse:
        plugin = self.local.info(request.type, request.id, request.HasField("options"))
        return introspection_pb2.PluginInfoResponse(plugin=plugin)


async def _init_local(ic: InitContext) -> Introspector:
    return Introspector(ic.plugins, ic.root)


async def _init_grpc(ic: InitContext) -> GrpcService:
    local = ic.plugins.get_by_id(registry.SERVICE, "introspection-service")
    assert isinstance(local, Introspector)
    # containerd keeps the uuid under the gRPC plugin's root.
    local.root = ic.root
    servicer = IntrospectionServicer(local)
    return GrpcService(
        (SERVICE_NAME,),
        lambda s: introspection_pb2_grpc.add_IntrospectionServicer_to_server(servicer, s),
    )


REGISTRATIONS = (
    Registration(registry.SERVICE, "introspection-service", _init_local),
    Registration(registry.GRPC, "introspection", _init_grpc, requires=(registry.SERVICE,)),
)
