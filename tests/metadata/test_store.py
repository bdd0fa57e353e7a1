"""The SQLite metadata store: tables, transactions, durability."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from api import errdefs
from daemon.metadata import records
from daemon.metadata.sqlite import SCHEMA_VERSION, SqliteStore
from daemon.metadata.store import (
    CONTAINERS,
    IMAGES,
    LEASE_RESOURCES,
    NAMESPACES,
    SNAPSHOTS,
    Tx,
)


def image(ns: str, name: str) -> records.Image:
    return records.Image(
        ns,
        name,
        records.Descriptor("application/x", "sha256:" + "a" * 64, 3, {"a": "b"}),
        {"l": "v"},
        1,
        2,
    )


async def test_roundtrip_every_field(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "m.db")
    try:
        img = image("ns1", "docker.io/x:1")
        c = records.Container(
            "ns1",
            "c1",
            "io.containerd.runc.v2",
            b"\x0a\x01x",
            None,
            {"k": "v"},
            "img",
            "native",
            "key",
            {"ext": b"\x00\x01", "empty": b""},
            "sb",
            5,
            6,
        )

        def put(tx: Tx) -> None:
            tx.put(IMAGES, img)
            tx.put(CONTAINERS, c)

        await store.update(put)
        assert await store.view(lambda tx: tx.get(IMAGES, "ns1", "docker.io/x:1")) == img
        assert await store.view(lambda tx: tx.get(CONTAINERS, "ns1", "c1")) == c
        assert await store.view(lambda tx: tx.get(IMAGES, "ns2", "docker.io/x:1")) is None
    finally:
        await store.close()


async def test_scan_prefixes_and_order(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "m.db")
    try:

        def put(tx: Tx) -> None:
            for ns in ("b", "a"):
                for sn in ("s2", "s1"):
                    for key in ("k2", "k1"):
                        tx.put(SNAPSHOTS, records.Snapshot(ns, sn, key, f"{ns}/{sn}/{key}"))

        await store.update(put)
        everything = await store.view(lambda tx: tx.scan(SNAPSHOTS))
        assert [s.backend_key for s in everything][:3] == ["a/s1/k1", "a/s1/k2", "a/s2/k1"]
        assert len(everything) == 8
        assert len(await store.view(lambda tx: tx.scan(SNAPSHOTS, "a"))) == 4
        assert [s.key for s in await store.view(lambda tx: tx.scan(SNAPSHOTS, "b", "s2"))] == [
            "k1",
            "k2",
        ]
        assert await store.view(lambda tx: tx.count(SNAPSHOTS, "a", "s1")) == 2
        assert await store.update(lambda tx: tx.delete_all(SNAPSHOTS, "a")) == 4
        assert await store.view(lambda tx: tx.count(SNAPSHOTS)) == 4
        assert await store.update(lambda tx: tx.delete(SNAPSHOTS, "b", "s1", "k1"))
        assert not await store.update(lambda tx: tx.delete(SNAPSHOTS, "b", "s1", "k1"))
    finally:
        await store.close()


async def test_a_failing_transaction_leaves_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "m.db")
    try:

        def half(tx: Tx) -> None:
            tx.put(NAMESPACES, records.Namespace("one"))
            tx.put(NAMESPACES, records.Namespace("two"))
            raise errdefs.Conflict("changed my mind")

        with pytest.raises(errdefs.Conflict):
            await store.update(half)
        assert await store.view(lambda tx: tx.scan(NAMESPACES)) == []
    finally:
        await store.close()


async def test_views_are_read_only(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "m.db")
    try:
        with pytest.raises(errdefs.InvalidArgument):
            await store.view(lambda tx: tx.put(NAMESPACES, records.Namespace("x")))
        with pytest.raises(errdefs.InvalidArgument):
            await store.view(lambda tx: tx.next_sequence())
    finally:
        await store.close()


async def test_sequence_only_grows_and_survives_reopen(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "m.db")
    a = await store.update(lambda tx: tx.next_sequence())
    b = await store.update(lambda tx: tx.next_sequence())
    await store.update(
        lambda tx: tx.put(LEASE_RESOURCES, records.LeaseResource("n", "l", "content", "d"))
    )
    await store.close()
    store = SqliteStore(tmp_path / "m.db")
    try:
        c = await store.update(lambda tx: tx.next_sequence())
        assert a < b < c
        assert len(await store.view(lambda tx: tx.scan(LEASE_RESOURCES, "n", "l"))) == 1
    finally:
        await store.close()


async def test_closed_store_is_unavailable(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "m.db")
    await store.close()
    await store.close()
    with pytest.raises(errdefs.Unavailable):
        await store.view(lambda tx: tx.scan(NAMESPACES))


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    await SqliteStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(errdefs.FailedPrecondition, match="newer"):
        SqliteStore(path)


async def test_reads_see_a_consistent_snapshot_while_writes_go_on(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "m.db")
    try:

        async def writer() -> None:
            for i in range(50):

                def pair(tx: Tx, i: int = i) -> None:
                    tx.put(NAMESPACES, records.Namespace(f"a{i}"))
                    tx.put(NAMESPACES, records.Namespace(f"b{i}"))

                await store.update(pair)

        async def reader() -> None:
            for _ in range(50):
                names = await store.view(lambda tx: [n.name for n in tx.scan(NAMESPACES)])
                # Both halves of a transaction or neither.
                assert sum(n.startswith("a") for n in names) == sum(
                    n.startswith("b") for n in names
                )

        await asyncio.gather(writer(), reader(), reader())
    finally:
        await store.close()


def test_database_is_in_wal_mode(tmp_path: Path) -> None:
    async def run() -> None:
        store = SqliteStore(tmp_path / "m.db")
        await store.update(lambda tx: tx.put(NAMESPACES, records.Namespace("x")))
        await store.close()

    asyncio.run(run())
    with sqlite3.connect(tmp_path / "m.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
