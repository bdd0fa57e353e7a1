"""Helpers for the peer tests: blobs, a local store with a peer server in front."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from daemon.peer.server import PeerServer
from daemon.peer.settings import PeerConfig, PeerSettings, resolve
from services.content.local import LocalContentStore
from services.content.store import ContentStore
from tests.peer.certs import NodeCert


def blob(size: int) -> tuple[bytes, str]:
    data = os.urandom(size)
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


async def put(store: ContentStore, data: bytes, ref: str = "put") -> str:
    w = await store.writer(ref, len(data))
    await w.write(data)
    return await w.commit(len(data))


def settings(cert: NodeCert | None, address: str = "127.0.0.1:0") -> PeerSettings:
    if cert is None:
        return resolve(PeerConfig(peer_address=address))
    return resolve(
        PeerConfig(peer_address=address, ca=str(cert.ca), cert=str(cert.cert), key=str(cert.key))
    )


@dataclass
class Served:
    """Bytes a peer server sent, and a hook run after each chunk."""

    total: int = 0
    after: Callable[[int], None] | None = None
    chunks: list[int] = field(default_factory=list)

    def __call__(self, n: int) -> None:
        self.total += n
        self.chunks.append(n)
        if self.after is not None:
            self.after(self.total)


@dataclass
class Holder:
    store: LocalContentStore
    server: PeerServer
    served: Served

    @property
    def address(self) -> str:
        return self.server.address


@contextlib.asynccontextmanager
async def holder(
    root: Path, cert: NodeCert | None, store: ContentStore | None = None
) -> AsyncIterator[Holder]:
    """A local content store under ``root`` served to peers on a loopback port
    (``store`` serves something else in its place)."""
    local = LocalContentStore(root)
    served = Served()
    server = PeerServer(store or local, settings(cert), served)
    await server.start()
    try:
        yield Holder(local, server, served)
    finally:
        await server.stop(0)
