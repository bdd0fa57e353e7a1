"""The daemon's ttrpc socket (``[ttrpc] address``, default ``<grpc address>.ttrpc``).

Shims reach the daemon here (events ``Forward``); every plugin offering a
ttrpc service (``daemon.capabilities.ServesTtrpc``) is registered on it.
Socket rules are the gRPC socket's: a stale socket is replaced, a live one
refused, the directory and socket get restrictive modes and the configured
owner.
"""

from __future__ import annotations

import logging

from api.ttrpc.server import Server
from daemon.capabilities import TtrpcService

log = logging.getLogger(__name__)

# Time in-flight ttrpc calls get to finish at shutdown.
SHUTDOWN_GRACE = 5.0


class TtrpcEndpoint:
    def __init__(self, address: str, uid: int = -1, gid: int = -1) -> None:
        self.address = address
        self.uid = uid
        self.gid = gid
        self.server = Server()
        self.names: list[str] = []

    def add(self, svc: TtrpcService) -> None:
        self.server.register(svc.name, svc.methods)
        self.names.append(svc.name)

    async def start(self) -> None:
        await self.server.serve_unix(self.address, uid=self.uid, gid=self.gid)
        log.info("ttrpc serving %s on %s", ", ".join(self.names), self.address)

    async def stop(self) -> None:
        await self.server.close(SHUTDOWN_GRACE)
