"""The read-ahead windows over a real content store: every read returns the
blob's own bytes, memory stays bounded and is given back, a failed backend
read is not remembered."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from api import errdefs
from daemon.metadata.readahead import ReadAhead
from services.content.local import LocalContentStore
from services.content.store import ReaderAt

KiB = 1024


async def put(store: LocalContentStore, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    w = await store.writer("r-" + digest[7:19], len(data))
    await w.write(data)
    await w.commit(len(data), digest)
    return digest


class CountingStore(LocalContentStore):
    """The local store, counting the backend reads the cache makes."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads = 0
        self.fail_next = False

    async def reader(self, digest: str) -> ReaderAt:
        ra = await super().reader(digest)
        store = self
        inner_read_at = ra.read_at

        async def read_at(offset: int, n: int) -> bytes:
            store.reads += 1
            if store.fail_next:
                store.fail_next = False
                raise errdefs.Unavailable("backend read failed")
            return await inner_read_at(offset, n)

        ra.read_at = read_at  # type: ignore[method-assign]
        return ra


@pytest.fixture
def store(tmp_path: Path) -> CountingStore:
    return CountingStore(tmp_path / "content")


async def test_sequential_small_reads_come_from_few_backend_reads(store: CountingStore) -> None:
    data = os.urandom(3 * 64 * KiB + 123)
    digest = await put(store, data)
    ra = ReadAhead(store, window=64 * KiB)
    reader = ra.reader(digest, len(data))
    got = b"".join([await reader.read_at(off, 8 * KiB) for off in range(0, len(data), 8 * KiB)])
    assert got == data
    # Four windows (the last one short), each read once from the backend.
    assert store.reads == 4


async def test_reads_across_windows_and_at_the_end(store: CountingStore) -> None:
    data = os.urandom(200 * KiB)
    digest = await put(store, data)
    reader = ReadAhead(store, window=64 * KiB).reader(digest, len(data))
    assert await reader.read_at(60 * KiB, 10 * KiB) == data[60 * KiB : 70 * KiB]
    assert await reader.read_at(len(data) - 5, 50) == data[-5:]
    assert await reader.read_at(len(data), 10) == b""
    with pytest.raises(errdefs.OutOfRange):
        await reader.read_at(len(data) + 1, 10)
    chunks = [c async for c in reader.chunks(10, 100 * KiB, chunk=32 * KiB)]
    assert b"".join(chunks) == data[10 : 10 + 100 * KiB]
    assert all(len(c) <= 32 * KiB for c in chunks)


async def test_large_and_whole_reads_bypass_the_windows(store: CountingStore) -> None:
    data = os.urandom(300 * KiB)
    digest = await put(store, data)
    ra = ReadAhead(store, window=64 * KiB)
    reader = ra.reader(digest, len(data))
    assert await reader.read_at(5, 200 * KiB) == data[5 : 5 + 200 * KiB]
    assert b"".join([c async for c in reader.chunks(7)]) == data[7:]
    assert not ra._windows


async def test_windows_are_bounded_and_given_back_when_idle(store: CountingStore) -> None:
    data = os.urandom(20 * 16 * KiB)
    digest = await put(store, data)
    ra = ReadAhead(store, window=16 * KiB, max_windows=4, idle=0.2)
    reader = ra.reader(digest, len(data))
    for off in range(0, len(data), 4 * KiB):
        assert await reader.read_at(off, 4 * KiB) == data[off : off + 4 * KiB]
        assert len(ra._windows) <= 4
    await asyncio.sleep(0.5)
    assert not ra._windows
    assert not ra._readers


async def test_a_failed_backend_read_is_not_cached(store: CountingStore) -> None:
    data = os.urandom(10 * KiB)
    digest = await put(store, data)
    ra = ReadAhead(store, window=64 * KiB)
    reader = ra.reader(digest, len(data))
    store.fail_next = True
    with pytest.raises(errdefs.Unavailable):
        await reader.read_at(0, 4 * KiB)
    assert await reader.read_at(0, 4 * KiB) == data[: 4 * KiB]


async def test_concurrent_readers_share_one_backend_read(store: CountingStore) -> None:
    data = os.urandom(64 * KiB)
    digest = await put(store, data)
    ra = ReadAhead(store, window=64 * KiB)
    got = await asyncio.gather(
        *(ra.reader(digest, len(data)).read_at(i * KiB, KiB) for i in range(16))
    )
    assert got == [data[i * KiB : (i + 1) * KiB] for i in range(16)]
    assert store.reads == 1
