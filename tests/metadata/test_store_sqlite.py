"""What only the SQLite metadata store does (the contract is ``test_store``'s)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from api import errdefs
from daemon.metadata import records
from daemon.metadata.sqlite import (
    POINT_CACHE,
    SCAN_KEPT,
    SCANS_KEPT,
    SCHEMA_VERSION,
    SqliteStore,
)
from daemon.metadata.store import (
    NAMESPACES,
    Tx,
)


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    await SqliteStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(errdefs.FailedPrecondition, match="newer"):
        SqliteStore(path)


def test_database_is_in_wal_mode(tmp_path: Path) -> None:
    async def run() -> None:
        store = SqliteStore(tmp_path / "m.db")
        await store.update(lambda tx: tx.put(NAMESPACES, records.Namespace("x")))
        await store.close()

    asyncio.run(run())
    with sqlite3.connect(tmp_path / "m.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# The point reads' cache is seen from outside by changing the database behind
# the store's back: a kept record still shows the old labels.


def _relabel_behind_the_store(path: Path, name: str, labels: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE namespaces SET labels = ? WHERE name = ?", (labels, name))


async def test_a_point_read_is_kept_until_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = SqliteStore(path)
    try:
        await store.update(lambda tx: tx.put(NAMESPACES, records.Namespace("x", {"a": "1"})))
        assert await store.get(NAMESPACES, "x") == records.Namespace("x", {"a": "1"})
        _relabel_behind_the_store(path, "x", '{"a": "2"}')
        assert await store.get(NAMESPACES, "x") == records.Namespace("x", {"a": "1"})
        # Any write, of any record, ends what was kept.
        await store.update(lambda tx: tx.put(NAMESPACES, records.Namespace("y")))
        assert await store.get(NAMESPACES, "x") == records.Namespace("x", {"a": "2"})
    finally:
        await store.close()


async def test_a_point_read_during_a_write_is_not_kept(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = SqliteStore(path)
    inside, release = threading.Event(), threading.Event()

    def slow(tx: Tx) -> None:
        tx.put(NAMESPACES, records.Namespace("x", {"a": "new"}))
        inside.set()
        release.wait(10)

    try:
        await store.update(lambda tx: tx.put(NAMESPACES, records.Namespace("x", {"a": "old"})))
        writing = asyncio.ensure_future(store.update(slow))
        assert await asyncio.to_thread(inside.wait, 10)
        # The write has not committed: the read sees the committed state...
        assert await store.get(NAMESPACES, "x") == records.Namespace("x", {"a": "old"})
        release.set()
        await writing
        # ...and was not kept past the write's commit.
        assert await store.get(NAMESPACES, "x") == records.Namespace("x", {"a": "new"})
    finally:
        release.set()
        await store.close()


async def test_point_reads_are_kept_again_after_a_failed_write(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = SqliteStore(path)

    def fails(tx: Tx) -> None:
        tx.put(NAMESPACES, records.Namespace("x", {"a": "lost"}))
        raise errdefs.Conflict("no")

    try:
        await store.update(lambda tx: tx.put(NAMESPACES, records.Namespace("x", {"a": "1"})))
        with pytest.raises(errdefs.Conflict):
            await store.update(fails)
        assert await store.get(NAMESPACES, "x") == records.Namespace("x", {"a": "1"})
        _relabel_behind_the_store(path, "x", '{"a": "2"}')
        assert await store.get(NAMESPACES, "x") == records.Namespace("x", {"a": "1"})
    finally:
        await store.close()


async def test_point_reads_kept_are_bounded(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "m.db")
    try:
        names = [f"ns{i}" for i in range(POINT_CACHE + 50)]

        def put_all(tx: Tx) -> None:
            for n in names:
                tx.put(NAMESPACES, records.Namespace(n))

        await store.update(put_all)
        for n in names:
            assert await store.get(NAMESPACES, n) == records.Namespace(n)
        assert len(store._points) == POINT_CACHE
        assert await store.get(NAMESPACES, "ns0") == records.Namespace("ns0")
    finally:
        await store.close()


async def test_a_short_scan_is_kept_until_the_next_write_and_a_long_one_never(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.db"
    store = SqliteStore(path)
    try:
        names = [f"n{i:03}" for i in range(SCAN_KEPT + 1)]

        def put_all(tx: Tx) -> None:
            for n in names:
                tx.put(NAMESPACES, records.Namespace(n, {"a": "1"}))

        await store.update(put_all)
        assert len(await store.scan(NAMESPACES)) == SCAN_KEPT + 1
        assert await store.scan(NAMESPACES, "n000") == [records.Namespace("n000", {"a": "1"})]
        _relabel_behind_the_store(path, "n000", '{"a": "2"}')
        # The short list was kept; the long one is read again.
        assert await store.scan(NAMESPACES, "n000") == [records.Namespace("n000", {"a": "1"})]
        assert (await store.scan(NAMESPACES))[0] == records.Namespace("n000", {"a": "2"})
        await store.update(lambda tx: tx.put(NAMESPACES, records.Namespace("zz")))
        assert await store.scan(NAMESPACES, "n000") == [records.Namespace("n000", {"a": "2"})]
        for n in names:
            await store.scan(NAMESPACES, n)
        assert len(store._scans) == SCANS_KEPT
    finally:
        await store.close()
