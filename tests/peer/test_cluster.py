"""Content across in-process nodes: the Content API of each node sees the blobs
the cluster holds, and reading one fetches it from a live holder once.

Every test runs over the in-process index (SQLite nodes) and over the real
one (etcd nodes on a real etcd, ``daemon.peer.etcdindex``)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from api import errdefs
from daemon.metadata.store import BLOBS
from daemon.peer.fetch import fetch_ref
from services.content.local import LocalContentStore
from services.content.proxy import ProxyContentStore
from services.content.store import Info, Status, Writer
from tests.conformance.leases import temporary_lease
from tests.peer.certs import NodeCert
from tests.peer.nodes import Backend, EtcdBackend, MemoryBackend, Node, node, nodes
from tests.peer.support import blob

MiB = 1 << 20


async def write(store: ProxyContentStore, data: bytes, ref: str = "w", **labels: str) -> str:
    w = await store.writer(ref, len(data))
    await w.write(data)
    return await w.commit(len(data), "", labels or None)


async def read(store: ProxyContentStore, digest: str) -> bytes:
    async with await store.reader(digest) as r:
        return b"".join([c async for c in r.chunks()])


@pytest.fixture(params=["memory", pytest.param("etcd", marks=pytest.mark.etcd)])
def cluster(request: pytest.FixtureRequest) -> Backend:
    if request.param == "etcd":
        return EtcdBackend(request.getfixturevalue("etcd_endpoints"))
    return MemoryBackend()


@pytest.fixture
async def abc(
    tmp_path: Path, cluster: Backend, node_certs: dict[str, NodeCert]
) -> AsyncIterator[list[Node]]:
    async with nodes(tmp_path, cluster, node_certs, "a", "b", "c") as ns:
        yield ns


async def test_a_blob_on_one_node_is_there_on_every_node(abc: list[Node]) -> None:
    a, b, c = abc
    data, dgst = blob(MiB)
    async with temporary_lease(a.ms.channel, "default") as lease:
        assert await write(a.api(lease=lease[1]), data, k="v") == dgst
        for n in (b, c):
            info = await n.api().info(dgst)
            assert (info.size, dict(info.labels)) == (len(data), {"k": "v"})
            # A client writing it again is told it exists and sends nothing.
            with pytest.raises(errdefs.AlreadyExists):
                await n.api().writer("again", len(data), dgst)
        assert a.value("berthd_content_client_written_bytes_total") == len(data)
        assert b.value("berthd_content_client_written_bytes_total") == 0
        # Nothing moved yet.
        assert a.served == 0
        with pytest.raises(errdefs.NotFound):
            await b.ms.content_backend.info(dgst)


async def test_reading_fetches_once_records_and_serves(abc: list[Node], cluster: Backend) -> None:
    a, b, c = abc
    data, dgst = blob(6 * MiB + 7)
    async with temporary_lease(a.ms.channel, "default") as la:
        await write(a.api(lease=la[1]), data)
    async with temporary_lease(b.ms.channel, "default") as lb:
        assert await read(b.api(lease=lb[1]), dgst) == data
        assert a.served == len(data) and b.fetched == len(data)
        assert (await b.ms.content_backend.info(dgst)).size == len(data)
        assert await cluster.holding("default", dgst) == ["a", "b"]
        # Read again: served from b's own store.
        assert await read(b.api(), dgst) == data
        assert b.fetched == len(data)
        # Many readers at once on c: one transfer between a and b.
        got = await asyncio.gather(*(read(c.api(), dgst) for _ in range(5)))
        assert got == [data] * 5
        assert c.fetched == len(data)
        assert a.served + b.served == 2 * len(data)
        assert c.value("berthd_content_peer_fetches_total", result="ok") == 1
        # The fetch held the blob for the reader's lease, as a write would.
        resources = await b.ms.services.leases.list_resources("default", lb[1])
        assert [(r.type, r.id) for r in resources] == [("content", dgst)]
    assert await b.ms.content_backend.list_statuses() == []


async def test_namespaces_stay_apart(abc: list[Node]) -> None:
    a, b, _ = abc
    data, dgst = blob(1000)
    await write(a.api("one"), data)
    assert (await b.api("one").info(dgst)).size == 1000
    with pytest.raises(errdefs.NotFound):
        await b.api("two").info(dgst)
    with pytest.raises(errdefs.NotFound):
        await b.api("two").reader(dgst)
    w = await b.api("two").writer("mine", 1000, dgst)  # not AlreadyExists
    await w.close()
    assert a.served == 0


async def test_labels_of_a_blob_held_elsewhere(abc: list[Node]) -> None:
    a, b, _ = abc
    data, dgst = blob(1000)
    await write(a.api(), data, keep="1")
    now = (await b.api().info(dgst)).created_at
    info = await b.api().update(Info(dgst, 0, now, now, {"source": "reg"}), ["labels.source"])
    assert dict(info.labels) == {"keep": "1", "source": "reg"}
    assert dict((await a.api().info(dgst)).labels) == {"keep": "1", "source": "reg"}
    with pytest.raises(errdefs.InvalidArgument):
        await b.api().update(Info(dgst, 0, now, now, {}), ["size"])
    assert a.served == 0  # labels changed without moving the bytes


async def test_a_blob_only_a_dead_node_holds_is_not_there(
    abc: list[Node], cluster: Backend
) -> None:
    a, b, _ = abc
    data, dgst = blob(1000)
    await write(a.api(), data)
    await cluster.kill("a")
    with pytest.raises(errdefs.NotFound):
        await b.api().info(dgst)
    with pytest.raises(errdefs.NotFound):
        await b.api().reader(dgst)
    w = await b.api().writer("from-registry", 1000, dgst)
    await w.close()


async def test_a_holder_dying_mid_fetch_another_finishes(abc: list[Node]) -> None:
    a, b, c = abc
    data, dgst = blob(32 * MiB)
    await write(a.api(), data)
    assert await read(c.api(), dgst) == data  # c holds it too
    stopped = stop_when_served(a, 4 * MiB)
    assert await read(b.api(), dgst) == data
    await asyncio.gather(*stopped)
    assert stopped, "b never received anything from a"
    assert 0 < c.served < len(data)
    assert b.value("berthd_content_peer_fetch_resumes_total") == 1


def stop_when_served(holder: Node, after: int) -> list[asyncio.Future[None]]:
    """Stop ``holder``'s peer server (as if it died) once it has sent
    ``after`` bytes; returns the stop, to await.  Counted where the bytes are
    sent, so the rest of the blob is not already on its way (the fetching
    side receives well ahead of what it has counted)."""
    stopped: list[asyncio.Future[None]] = []
    server = holder.plugin.server
    servicer = server._servicer
    count = servicer._served
    sent = 0

    def served(n: int) -> None:
        nonlocal sent
        if count is not None:
            count(n)
        sent += n
        if sent >= after and not stopped:
            stopped.append(asyncio.ensure_future(server.stop(0)))

    servicer._served = served
    return stopped


async def test_a_failed_fetch_leaves_nothing_and_a_retry_completes(
    tmp_path: Path, cluster: Backend, node_certs: dict[str, NodeCert]
) -> None:
    data, dgst = blob(24 * MiB)
    async with nodes(tmp_path, cluster, node_certs, "a", "b") as (a, b):
        await write(a.api(), data)
        server = a.plugin.server
        stopped = stop_when_served(a, 4 * MiB)
        with pytest.raises(errdefs.Unavailable, match="no holder could serve it"):
            await read(b.api(), dgst)
        await asyncio.gather(*stopped)
        with pytest.raises(errdefs.NotFound):
            await b.ms.content_backend.info(dgst)
        assert await b.ms.content_backend.list_statuses() == []
        assert await b.ms.services.db.view(lambda tx: tx.scan(BLOBS, "default")) == []
        # The holder comes back on its address: the retry completes.
        server.settings = dataclasses.replace(server.settings, port=server.port)
        await server.start()
        assert await read(b.api(), dgst) == data
        assert b.value("berthd_content_peer_fetches_total", result="failed") == 1
        assert b.value("berthd_content_peer_fetches_total", result="ok") == 1


class _GatedWriter:
    def __init__(self, inner: Writer, gate: asyncio.Event, waiting: asyncio.Event) -> None:
        self.inner, self.gate, self.waiting = inner, gate, waiting

    @property
    def ref(self) -> str:
        return self.inner.ref

    async def status(self) -> Status:
        return await self.inner.status()

    def digest(self) -> str:
        return self.inner.digest()

    async def write(self, data: bytes) -> int:
        self.waiting.set()
        await self.gate.wait()
        return await self.inner.write(data)

    async def truncate(self, size: int) -> None:
        await self.inner.truncate(size)

    async def commit(
        self, size: int = 0, expected: str = "", labels: Mapping[str, str] | None = None
    ) -> str:
        return await self.inner.commit(size, expected, labels)

    async def close(self) -> None:
        await self.inner.close()


class _GatedStore(LocalContentStore):
    """Writes of peer fetches wait for ``gate``."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def writer(self, ref: str, total: int = 0, expected: str = "") -> Writer:  # type: ignore[override]
        w = await super().writer(ref, total, expected)
        return _GatedWriter(w, self.gate, self.waiting) if ref == fetch_ref(expected) else w


async def test_garbage_collection_leaves_a_fetch_under_way_alone(
    tmp_path: Path, cluster: Backend, node_certs: dict[str, NodeCert]
) -> None:
    data, dgst = blob(6 * MiB)
    gated = _GatedStore(tmp_path / "b-content")
    async with (
        node(tmp_path, "a", cluster, node_certs["a"]) as a,
        node(tmp_path, "b", cluster, node_certs["b"], content=gated) as b,
    ):
        await write(a.api(), data)
        reading = asyncio.ensure_future(read(b.api(), dgst))
        await gated.waiting.wait()
        assert [s.ref for s in await gated.list_statuses()] == [fetch_ref(dgst)]
        await b.content.garbage_collect()
        assert [s.ref for s in await gated.list_statuses()] == [fetch_ref(dgst)]
        gated.gate.set()
        assert await reading == data
        # Recorded before the collector could miss it: it stays.
        await b.content.garbage_collect()
        assert (await gated.info(dgst)).size == len(data)
