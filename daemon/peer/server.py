"""The peer server: this node's content store, read-only, to the other nodes.

A ``containerd.services.content.v1.Content`` service on its own TCP port
(never on the daemon's unix socket), over the node's backend store (no
namespaces: a peer asks for bytes by digest).  Only Info and Read are
served, with the content plugin's own wire behaviour; the calls that would
change the store (Write, Update, Delete, Abort) are PermissionDenied, the
listings (List, Status, ListStatuses) are not offered (Unimplemented).

With TLS files the port speaks mutual TLS only: the handshake refuses a
client without a certificate the cluster CA signed, before any call.
Without them it is plain TCP, which ``settings`` allows only on loopback.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from api import errdefs
from api.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from daemon.peer.settings import PeerSettings, TLSFiles
from services.content.servicer import ContentServicer
from services.content.store import ContentStore
from services.harness.interceptors import EdgeInterceptor
from services.harness.server import CHANNEL_OPTIONS

log = logging.getLogger(__name__)

SERVICE_NAME = "containerd.services.content.v1.Content"
Context = grpc.aio.ServicerContext[Any, Any]


def _read_only(method: str) -> errdefs.PermissionDenied:
    return errdefs.PermissionDenied(f"peer content is read-only: {method} is not allowed")


def _not_offered(method: str) -> errdefs.NotImplemented:
    return errdefs.NotImplemented(f"{method} is not offered to peers")


class PeerContentServicer(content_pb2_grpc.ContentServicer):
    """Info and Read of ``store``; ``served(n)`` is told every chunk sent."""

    def __init__(self, store: ContentStore, served: Callable[[int], None] | None = None) -> None:
        self._plain = ContentServicer(store)
        self._served = served

    async def Info(self, request: content_pb2.InfoRequest, context: Context) -> Any:
        return await self._plain.Info(request, context)

    async def Read(
        self, request: content_pb2.ReadContentRequest, context: Context
    ) -> AsyncIterator[content_pb2.ReadContentResponse]:
        async for resp in self._plain.Read(request, context):
            if self._served is not None:
                self._served(len(resp.data))
            yield resp

    async def Update(self, request: content_pb2.UpdateRequest, context: Context) -> Any:
        raise _read_only("Update")

    async def Delete(self, request: content_pb2.DeleteContentRequest, context: Context) -> Any:
        raise _read_only("Delete")

    async def Abort(self, request: content_pb2.AbortRequest, context: Context) -> Any:
        raise _read_only("Abort")

    async def Write(
        self, request_iterator: AsyncIterator[content_pb2.WriteContentRequest], context: Context
    ) -> AsyncIterator[content_pb2.WriteContentResponse]:
        raise _read_only("Write")
        yield  # an async generator, like every streaming handler  # pragma: no cover

    async def List(
        self, request: content_pb2.ListContentRequest, context: Context
    ) -> AsyncIterator[content_pb2.ListContentResponse]:
        raise _not_offered("List")
        yield  # pragma: no cover

    async def Status(self, request: content_pb2.StatusRequest, context: Context) -> Any:
        raise _not_offered("Status")

    async def ListStatuses(self, request: content_pb2.ListStatusesRequest, context: Context) -> Any:
        raise _not_offered("ListStatuses")


def server_credentials(tls: TLSFiles) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(tls.key, tls.cert)], root_certificates=tls.ca, require_client_auth=True
    )


class PeerServer:
    """``PeerServer(store, settings)``: ``start()`` binds and returns the
    advertised address; ``stop()`` lets calls in flight finish briefly."""

    def __init__(
        self,
        store: ContentStore,
        settings: PeerSettings,
        served: Callable[[int], None] | None = None,
    ) -> None:
        self.settings = settings
        self._servicer = PeerContentServicer(store, served)
        self._server: grpc.aio.Server | None = None
        self.port = 0
        self.address = ""

    async def start(self) -> str:
        s = self.settings
        server = grpc.aio.server(
            interceptors=[EdgeInterceptor(None)],
            # Two daemons must never share one peer port.
            options=[*CHANNEL_OPTIONS, ("grpc.so_reuseport", 0)],
        )
        content_pb2_grpc.add_ContentServicer_to_server(self._servicer, server)
        try:
            if s.tls is not None:
                port = server.add_secure_port(s.bind, server_credentials(s.tls))
            else:
                port = server.add_insecure_port(s.bind)
        except RuntimeError as e:
            raise errdefs.Unavailable(f"peer server cannot listen on {s.bind}: {e}") from None
        if port == 0:
            raise errdefs.Unavailable(f"peer server cannot listen on {s.bind}")
        await server.start()
        self._server, self.port = server, port
        self.address = s.advertise(port)
        if s.tls is None:
            log.warning(
                "peer content served on %s over plain TCP, without authentication "
                "(allowed on loopback only; set ca, cert and key for mutual TLS)",
                s.bind,
            )
        else:
            log.info(
                "peer content served on %s (mutual TLS), advertised as %s", s.bind, self.address
            )
        return self.address

    async def stop(self, grace: float = 2.0) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop(grace)
