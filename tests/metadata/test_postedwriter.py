"""Writes answered before the backend has written them (daemon.metadata.postedwriter),
over a real local content store."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from api import errdefs
from daemon.metadata.content import NamespacedContent
from daemon.metadata.db import MetadataDB
from daemon.metadata.postedwriter import PostedWriter
from daemon.metadata.sqlite import SqliteStore
from daemon.metadata.store import INGESTS
from services.content.ingest import LocalWriter
from services.content.local import LocalContentStore
from services.content.store import ns_of
from tests.content.tinyfs import tiny_tmpfs

MiB = 1 << 20


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def test_posted_writes_commit_what_was_written(tmp_path: Path) -> None:
    store = LocalContentStore(tmp_path)
    data = os.urandom(3 * MiB + 5)
    w = PostedWriter(await store.writer("posted", len(data)))
    assert (await w.status()).offset == 0
    for i in range(0, len(data), MiB):
        assert await w.write(data[i : i + MiB]) == len(data[i : i + MiB])
        # the answer's digest covers every byte, whether or not the backend is done
        assert w.digest() == sha(data[: i + MiB])
    assert await w.commit(len(data), sha(data)) == sha(data)
    async with await store.reader(sha(data)) as r:
        assert await r.read_at(0, len(data)) == data


async def test_a_resumed_ingest_waits_for_the_backend(tmp_path: Path) -> None:
    """Its first bytes are not ours to hash: the backend's digest is the one."""
    store = LocalContentStore(tmp_path)
    data = os.urandom(2 * MiB)
    first = await store.writer("resumed", len(data))
    await first.write(data[:MiB])
    await first.close()
    w = PostedWriter(await store.writer("resumed", len(data)))
    assert (await w.status()).offset == MiB
    await w.write(data[MiB:])
    assert w.digest() == sha(data)
    assert (await w.status()).offset == len(data)
    # truncating to 0 makes the bytes ours again
    await w.truncate(0)
    await w.write(data)
    assert w.digest() == sha(data)
    assert await w.commit(len(data), sha(data)) == sha(data)


@pytest.mark.root
async def test_a_failed_write_is_the_next_operations_error(tmp_path: Path) -> None:
    with tiny_tmpfs(tmp_path / "fs", "1m") as fs:
        store = LocalContentStore(fs.where / "content")
        data = os.urandom(2 * MiB)
        w = PostedWriter(await store.writer("full", len(data)))
        await w.status()
        assert await w.write(data[:MiB]) == MiB  # answered before the disk filled
        with pytest.raises(errdefs.ResourceExhausted, match="no space left on device"):
            await w.write(data[MiB:])
        # what reached the disk is what the backend says, hash and all
        st = await w.status()
        assert 0 < st.offset < MiB
        assert w.digest() == sha(data[: st.offset])
        await w.close()
        fs.resize("8m")
        again = PostedWriter(await store.writer("full", len(data)))
        assert (await again.status()).offset == st.offset
        await again.write(data[st.offset :])
        assert await again.commit(len(data), sha(data)) == sha(data)


@pytest.mark.root
async def test_commit_waits_for_the_last_write_and_reports_its_error(tmp_path: Path) -> None:
    with tiny_tmpfs(tmp_path / "fs", "1m"):
        store = LocalContentStore(tmp_path / "fs" / "content")
        data = os.urandom(MiB + MiB // 2)
        w = PostedWriter(await store.writer("last", len(data)))
        await w.status()
        await w.write(data)
        with pytest.raises(errdefs.ResourceExhausted):
            await w.commit(len(data), sha(data))
        with pytest.raises(errdefs.NotFound):
            await store.info(sha(data))
        assert 0 < (await store.status("last")).offset < len(data)


async def test_status_of_an_ingest_includes_every_answered_write(tmp_path: Path) -> None:
    """Another caller's Status sees what the writer was told was written (as
    containerd's does), not the backend a write behind."""
    db = MetadataDB(SqliteStore(tmp_path / "meta.db"))
    content = NamespacedContent(db, LocalContentStore(tmp_path / "content"))
    try:
        data = os.urandom(64 * MiB)  # long enough to still be in flight
        w = await content.writer("ns", "big", len(data))
        await w.status()
        assert await w.write(data) == len(data)
        assert (await content.status("ns", "big")).offset == len(data)
        assert [s.offset for s in await content.list_statuses("ns")] == [len(data)]
        assert await w.commit(len(data), sha(data)) == sha(data)
    finally:
        await db.close()


class _OpensWhenLet(LocalContentStore):
    """A local store whose first writer opens only once the test sets ``gate``
    (a content plugin slow to answer), or fails with ``refusal``."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate = asyncio.Event()
        self.opened: list[str] = []
        self.refusal: Exception | None = None
        self._calls = 0

    async def writer(self, ref: str, total: int = 0, expected: str = "") -> LocalWriter:
        self._calls += 1
        if self._calls == 1:
            await self.gate.wait()
            if self.refusal is not None:
                raise self.refusal
        w = await super().writer(ref, total, expected)
        self.opened.append(ref)
        return w


@pytest.fixture
async def gated(tmp_path: Path) -> AsyncIterator[tuple[NamespacedContent, _OpensWhenLet]]:
    db = MetadataDB(SqliteStore(tmp_path / "meta.db"))
    backend = _OpensWhenLet(tmp_path / "content")
    try:
        yield NamespacedContent(db, backend), backend
    finally:
        backend.gate.set()
        await db.close()


async def test_a_new_ingest_is_answered_before_the_backend_opens_it(
    gated: tuple[NamespacedContent, _OpensWhenLet],
) -> None:
    content, backend = gated
    data = os.urandom(1000)
    before = time.time_ns()
    # (A bound, not a timing: it waits for ever where the opening is awaited.)
    w = await asyncio.wait_for(content.writer("ns", "new", len(data), sha(data)), 10)
    st = await w.status()
    assert (st.offset, st.total) == (0, len(data))
    assert await w.write(data) == len(data)
    assert w.digest() == sha(data)
    assert backend.opened == []
    # Its times are the daemon's: it started when it was recorded.
    assert before <= ns_of(st.started_at) == ns_of(st.updated_at) <= time.time_ns()
    backend.gate.set()
    assert await w.commit(len(data), sha(data)) == sha(data)
    assert len(backend.opened) == 1
    assert (await content.info("ns", sha(data))).size == len(data)


async def test_a_second_writer_waits_for_the_first_ones_opening(
    gated: tuple[NamespacedContent, _OpensWhenLet],
) -> None:
    content, backend = gated
    first = await asyncio.wait_for(content.writer("ns", "taken", 3), 10)
    second = asyncio.ensure_future(content.writer("ns", "taken", 3))
    # The second would reach the backend first (only the first's opening is
    # held back): it waits for the first's opening instead, and is refused.
    await asyncio.sleep(0.1)
    assert not second.done() and backend.opened == []
    backend.gate.set()
    with pytest.raises(errdefs.Unavailable, match="locked"):
        await second
    await first.write(b"abc")
    assert await first.commit(3, sha(b"abc")) == sha(b"abc")


async def test_a_failed_opening_is_the_next_operations_error(tmp_path: Path) -> None:
    store = LocalContentStore(tmp_path)
    holder = await store.writer("taken")
    w = PostedWriter.opening("taken", store.writer("taken"))
    assert await w.write(b"abc") == 3  # answered; the opening fails behind it
    with pytest.raises(errdefs.Unavailable, match="locked"):
        await w.commit(3, sha(b"abc"))
    await w.close()
    await holder.close()
    assert (await store.status("taken")).offset == 0


async def test_an_ingest_aborted_while_opening_is_aborted_once_open(
    gated: tuple[NamespacedContent, _OpensWhenLet],
) -> None:
    content, backend = gated
    w = await asyncio.wait_for(content.writer("ns", "gone", 3), 10)
    abort = asyncio.ensure_future(content.abort("ns", "gone"))
    await asyncio.sleep(0.1)
    backend.gate.set()
    await abort
    await w.close()  # its opening is over, one way or the other
    # Nothing is left behind: neither the record nor the backend's ingest.
    with pytest.raises(errdefs.NotFound):
        await content.status("ns", "gone")
    assert await backend.list_statuses() == []


async def test_an_ingest_the_backend_does_not_open_is_forgotten(
    gated: tuple[NamespacedContent, _OpensWhenLet],
) -> None:
    content, backend = gated
    backend.refusal = errdefs.ResourceExhausted("no space left on device")
    backend.gate.set()
    w = await content.writer("ns", "refused", 3)
    assert await w.write(b"abc") == 3  # answered; the opening fails behind it
    with pytest.raises(errdefs.ResourceExhausted, match="no space left"):
        await w.commit(3, sha(b"abc"))
    await w.close()
    # As when the opening was waited for: no record of an ingest nobody holds.
    assert await content.db.view(lambda tx: tx.get(INGESTS, "ns", "refused")) is None
    with pytest.raises(errdefs.NotFound):
        await content.status("ns", "refused")
    # The ref is free for a new try.
    again = await content.writer("ns", "refused", 3)
    await again.write(b"abc")
    assert await again.commit(3, sha(b"abc")) == sha(b"abc")
