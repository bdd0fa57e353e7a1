"""The fetcher against real peer servers: verified, resumable, single-flight, all or nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType

import pytest
from prometheus_client import CollectorRegistry

from api import errdefs
from daemon.peer.client import PeerClients
from daemon.peer.fetch import PeerFetcher, fetch_ref
from daemon.peer.index import Holder as HolderAddress
from daemon.peer.metrics import PeerMetrics
from daemon.peer.settings import TLSFiles
from services.content.local import LocalContentStore
from services.content.store import READ_CHUNK, ContentStore, Info, ReaderAt
from tests.peer.certs import NodeCert
from tests.peer.support import Holder, blob, holder, put

MiB = 1 << 20


class Fixture:
    def __init__(self, root: Path, certs: dict[str, NodeCert], stall: float = 10.0) -> None:
        self.root = root
        self.certs = certs
        self.local = LocalContentStore(root / "local")
        self.clients = PeerClients(TLSFiles(*certs["b"].pem()))
        self.metrics = PeerMetrics(CollectorRegistry())
        self.fetcher = PeerFetcher(
            self.local, self.clients.store, self.metrics, stall_timeout=stall
        )

    def value(self, name: str, **labels: str) -> float:
        v = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if v is None else v

    async def assert_nothing_left(self, digest: str) -> None:
        with pytest.raises(errdefs.NotFound):
            await self.local.info(digest)
        assert await self.local.list_statuses() == []

    async def read(self, digest: str) -> bytes:
        async with await self.local.reader(digest) as r:
            return b"".join([c async for c in r.chunks()])


@pytest.fixture
async def fx(tmp_path: Path, node_certs: dict[str, NodeCert]) -> AsyncIterator[Fixture]:
    f = Fixture(tmp_path, node_certs)
    yield f
    await f.fetcher.close()
    await f.clients.close()


def at(*holders: Holder) -> list[HolderAddress]:
    return [HolderAddress(f"n{i}", h.address) for i, h in enumerate(holders)]


async def test_fetch_writes_a_verified_blob(fx: Fixture) -> None:
    data, dgst = blob(5 * MiB + 123)
    async with holder(fx.root / "a", fx.certs["a"]) as a:
        await put(a.store, data)
        await fx.fetcher.fetch(dgst, len(data), at(a))
        assert a.served.total == len(data)
    assert await fx.read(dgst) == data
    assert await fx.local.list_statuses() == []
    assert fx.value("berthd_content_peer_fetched_bytes_total") == len(data)
    assert fx.value("berthd_content_peer_fetches_total", result="ok") == 1
    assert fx.value("berthd_content_peer_fetch_duration_seconds_count", result="ok") == 1
    # Already here: nothing is fetched again, even with no holder left.
    await fx.fetcher.fetch(dgst, len(data), [])


async def test_concurrent_fetches_of_one_blob_transfer_it_once(fx: Fixture) -> None:
    data, dgst = blob(8 * MiB)
    async with holder(fx.root / "a", fx.certs["a"]) as a:
        await put(a.store, data)
        await asyncio.gather(*(fx.fetcher.fetch(dgst, len(data), at(a)) for _ in range(6)))
        assert a.served.total == len(data)
    assert await fx.read(dgst) == data
    assert fx.value("berthd_content_peer_fetches_total", result="ok") == 1


async def test_a_caller_giving_up_does_not_stop_the_transfer(fx: Fixture) -> None:
    data, dgst = blob(8 * MiB)
    async with holder(fx.root / "a", fx.certs["a"]) as a:
        await put(a.store, data)
        started = asyncio.Event()
        a.served.after = lambda _: started.set()
        first = asyncio.ensure_future(fx.fetcher.fetch(dgst, len(data), at(a)))
        await started.wait()
        second = asyncio.ensure_future(fx.fetcher.fetch(dgst, len(data), at(a)))
        first.cancel()
        await second
        with pytest.raises(asyncio.CancelledError):
            await first
    assert await fx.read(dgst) == data


async def test_a_holder_dying_mid_transfer_resumes_from_the_next(fx: Fixture) -> None:
    data, dgst = blob(24 * MiB)
    async with (
        holder(fx.root / "a", fx.certs["a"]) as a,
        holder(fx.root / "c", fx.certs["c"]) as c,
    ):
        await put(a.store, data)
        await put(c.store, data)
        killed: list[asyncio.Future[None]] = []

        def die(total: int) -> None:
            if total >= 6 * MiB and not killed:
                killed.append(asyncio.ensure_future(a.server.stop(0)))

        a.served.after = die
        await fx.fetcher.fetch(dgst, len(data), at(a, c))
        await asyncio.gather(*killed)
        # c sent only what a had not: the transfer went on at an offset.
        assert 0 < c.served.total < len(data)
        assert c.served.total <= len(data) - 4 * MiB
    assert await fx.read(dgst) == data
    assert await fx.local.list_statuses() == []
    assert fx.value("berthd_content_peer_fetch_resumes_total") == 1
    assert fx.value("berthd_content_peer_fetches_total", result="ok") == 1


async def test_every_holder_failing_leaves_nothing(fx: Fixture) -> None:
    data, dgst = blob(12 * MiB)
    async with holder(fx.root / "a", fx.certs["a"]) as a:
        await put(a.store, data)
        stopping: list[asyncio.Future[None]] = []

        def die(total: int) -> None:
            if total >= 2 * MiB and not stopping:
                stopping.append(asyncio.ensure_future(a.server.stop(0)))

        a.served.after = die
        gone = HolderAddress("gone", "127.0.0.1:1")  # nothing listens there
        with pytest.raises(errdefs.Unavailable, match=r"no holder could serve it \(n0 at .*; gone"):
            await fx.fetcher.fetch(dgst, len(data), [*at(a), gone])
        await asyncio.gather(*stopping)
    await fx.assert_nothing_left(dgst)
    assert fx.value("berthd_content_peer_fetches_total", result="failed") == 1
    assert fx.fetcher.in_flight() == []


async def test_bytes_that_do_not_hash_to_the_digest_are_dropped(fx: Fixture) -> None:
    data, dgst = blob(3 * MiB)
    async with holder(fx.root / "a", fx.certs["a"]) as a:
        # The holder's file was damaged: same name, same size, other bytes.
        path = a.store.blob_path(dgst)
        path.parent.mkdir(parents=True)
        path.write_bytes(bytes(len(data)))
        with pytest.raises(errdefs.DataLoss, match="hash to sha256:"):
            await fx.fetcher.fetch(dgst, len(data), at(a))
    await fx.assert_nothing_left(dgst)


async def test_a_holder_with_another_size_is_skipped(fx: Fixture) -> None:
    data, dgst = blob(2 * MiB)
    async with (
        holder(fx.root / "a", fx.certs["a"]) as a,
        holder(fx.root / "c", fx.certs["c"]) as c,
    ):
        path = a.store.blob_path(dgst)
        path.parent.mkdir(parents=True)
        path.write_bytes(data[:-1])
        await put(c.store, data)
        await fx.fetcher.fetch(dgst, len(data), at(a, c))
        assert a.served.total == 0 and c.served.total == len(data)
    assert await fx.read(dgst) == data


class _StallingReader:
    """Sends the first chunk, then nothing until released."""

    def __init__(self, inner: ReaderAt, release: asyncio.Event) -> None:
        self.inner = inner
        self.release = release

    @property
    def size(self) -> int:
        return self.inner.size

    async def read_at(self, offset: int, n: int) -> bytes:
        return await self.inner.read_at(offset, n)

    async def chunks(
        self, offset: int = 0, size: int = 0, chunk: int = READ_CHUNK
    ) -> AsyncIterator[bytes]:
        sent = False
        async for data in self.inner.chunks(offset, size, chunk):
            if sent:
                await self.release.wait()
            yield data
            sent = True

    async def close(self) -> None:
        await self.inner.close()

    async def __aenter__(self) -> _StallingReader:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class _StallingStore(LocalContentStore):
    def __init__(self, root: Path, release: asyncio.Event) -> None:
        super().__init__(root)
        self.release = release

    async def reader(self, digest: str) -> _StallingReader:  # type: ignore[override]
        return _StallingReader(await super().reader(digest), self.release)

    async def info(self, digest: str) -> Info:
        return await super().info(digest)


async def test_a_stalled_holder_is_given_up_on(
    tmp_path: Path, node_certs: dict[str, NodeCert]
) -> None:
    fx = Fixture(tmp_path, node_certs, stall=0.5)
    data, dgst = blob(6 * MiB)
    release = asyncio.Event()
    stalling: ContentStore = _StallingStore(tmp_path / "a", release)
    try:
        async with (
            holder(tmp_path / "a", node_certs["a"], store=stalling) as a,
            holder(tmp_path / "c", node_certs["c"]) as c,
        ):
            await put(a.store, data)
            await put(c.store, data)
            await fx.fetcher.fetch(dgst, len(data), at(a, c))
            assert 0 < c.served.total < len(data)
            release.set()
        assert await fx.read(dgst) == data
        assert fx.value("berthd_content_peer_fetch_resumes_total") == 1
    finally:
        await fx.fetcher.close()
        await fx.clients.close()


async def test_an_interrupted_ingest_is_started_over(fx: Fixture) -> None:
    data, dgst = blob(2 * MiB)
    # A fetch that a crash interrupted left its ingest with other bytes.
    w = await fx.local.writer(fetch_ref(dgst), len(data), dgst)
    await w.write(b"garbage" * 1000)
    await w.close()
    async with holder(fx.root / "a", fx.certs["a"]) as a:
        await put(a.store, data)
        await fx.fetcher.fetch(dgst, len(data), at(a))
    assert await fx.read(dgst) == data
    assert await fx.local.list_statuses() == []


async def test_no_holder_is_unavailable(fx: Fixture) -> None:
    _, dgst = blob(10)
    with pytest.raises(errdefs.Unavailable, match="no live node holds it"):
        await fx.fetcher.fetch(dgst, 10, [])
    with pytest.raises(errdefs.InvalidArgument):
        await fx.fetcher.fetch("sha256:nope", 10, [])
