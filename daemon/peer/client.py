"""Connections to other nodes' peer servers: one channel per address, kept.

A node with TLS files dials with mutual TLS (the cluster CA checks the
server, the node's certificate is its client certificate); a node without
them dials plain TCP, and only loopback addresses.  The channel reconnects
quickly after a peer restarts, so a node that comes back is used again
soon.  The store it returns is the project's Content proxy client, so a
peer's status codes arrive as typed errors.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from api import errdefs
from daemon.peer.settings import TLSFiles, is_loopback, split_host_port
from services.content.proxy import ProxyContentStore
from services.harness.server import CHANNEL_OPTIONS

log = logging.getLogger(__name__)

OPTIONS: tuple[tuple[str, Any], ...] = (
    *CHANNEL_OPTIONS,
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


class PeerClients:
    def __init__(self, tls: TLSFiles | None) -> None:
        self._creds = (
            grpc.ssl_channel_credentials(tls.ca, tls.key, tls.cert) if tls is not None else None
        )
        self._channels: dict[str, grpc.aio.Channel] = {}

    def store(self, address: str) -> ProxyContentStore:
        """The content store of the peer at ``address`` (``HOST:PORT``).

        Raises InvalidArgument for an address that does not parse,
        PermissionDenied for a non-loopback peer when this node has no TLS.
        """
        ch = self._channels.get(address)
        if ch is None:
            try:
                host, _ = split_host_port(address)
            except ValueError as e:
                raise errdefs.InvalidArgument(f"peer address {e}") from None
            if self._creds is not None:
                ch = grpc.aio.secure_channel(address, self._creds, options=OPTIONS)
            elif is_loopback(host):
                ch = grpc.aio.insecure_channel(address, options=OPTIONS)
            else:
                raise errdefs.PermissionDenied(
                    f"peer {address}: not a loopback address and this node has no TLS files"
                )
            self._channels[address] = ch
        return ProxyContentStore(ch, name=f"peer {address}")

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        for ch in channels.values():
            await ch.close()
