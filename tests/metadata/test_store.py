"""The metadata store contract, on every backend: tables, transactions, durability.

The same tests run on SQLite and on etcd (a real single-member cluster, see
``conftest``); backend-specific behaviour lives in ``test_store_sqlite`` and
``test_store_etcd``.
"""

from __future__ import annotations

import asyncio

import pytest

from api import errdefs
from daemon.metadata import records
from daemon.metadata.db import SEQUENCE_BLOCK, MetadataDB
from daemon.metadata.store import (
    BLOBS,
    CONTAINERS,
    IMAGES,
    LEASE_RESOURCES,
    LEASES,
    NAMESPACES,
    SNAPSHOTS,
    MetadataStore,
    Tx,
)
from tests.metadata.stores import StoreMaker

DIGEST = "sha256:" + "a" * 64


def image(ns: str, name: str) -> records.Image:
    return records.Image(
        ns,
        name,
        records.Descriptor("application/x", DIGEST, 3, {"a": "b"}),
        {"l": "v"},
        1,
        2,
    )


async def test_roundtrip_every_field(stores: StoreMaker) -> None:
    store = await stores.open()
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


async def test_scan_prefixes_and_order(stores: StoreMaker) -> None:
    store = await stores.open()
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


async def test_keys_with_separators_stay_apart_and_in_order(stores: StoreMaker) -> None:
    """Key fields may hold "/", "%" and any text: a prefix never matches a
    longer field, and order is the fields' order."""
    store = await stores.open()
    names = ["a", "a/b", "a%2Fb", "a b", "a-b", "ab", "é", "a/", "%"]
    try:

        def put(tx: Tx) -> None:
            for ns in ("x", "x/y", "x%"):
                for name in names:
                    tx.put(IMAGES, image(ns, name))

        await store.update(put)
        for ns in ("x", "x/y", "x%"):
            found = await store.view(lambda tx, ns=ns: tx.scan(IMAGES, ns))
            assert [i.name for i in found] == sorted(names)
            assert {i.namespace for i in found} == {ns}
        got = await store.view(lambda tx: tx.get(IMAGES, "x/y", "a/b"))
        assert got is not None and got.namespace == "x/y" and got.name == "a/b"
        assert await store.view(lambda tx: tx.get(IMAGES, "x", "y/a")) is None
        everything = await store.view(lambda tx: tx.scan(IMAGES))
        assert [(i.namespace, i.name) for i in everything] == sorted(
            (ns, n) for ns in ("x", "x/y", "x%") for n in names
        )
    finally:
        await store.close()


async def test_a_transaction_reads_its_own_writes(stores: StoreMaker) -> None:
    store = await stores.open()
    try:
        await store.update(
            lambda tx: [tx.put(LEASES, records.Lease("n", f"l{i}")) for i in range(3)]
        )

        def txn(tx: Tx) -> tuple[list[str], list[str], int, list[str]]:
            tx.put(LEASES, records.Lease("n", "l9"))
            tx.delete(LEASES, "n", "l0")
            seen = [le.id for le in tx.scan(LEASES, "n")]
            assert tx.get(LEASES, "n", "l9") is not None
            assert tx.get(LEASES, "n", "l0") is None
            dropped = tx.delete_all(LEASES, "n")
            after = [le.id for le in tx.scan(LEASES, "n")]
            tx.put(LEASES, records.Lease("n", "l5"))
            return seen, after, dropped, [le.id for le in tx.scan(LEASES)]

        seen, after, dropped, final = await store.update(txn)
        assert seen == ["l1", "l2", "l9"]
        assert (after, dropped, final) == ([], 3, ["l5"])
        assert [le.id for le in await store.view(lambda tx: tx.scan(LEASES))] == ["l5"]
    finally:
        await store.close()


async def test_full_keys_and_prefix_lengths_are_checked(stores: StoreMaker) -> None:
    store = await stores.open()
    try:
        with pytest.raises(errdefs.InvalidArgument):
            await store.view(lambda tx: tx.get(IMAGES, "ns"))
        with pytest.raises(errdefs.InvalidArgument):
            await store.update(lambda tx: tx.delete(IMAGES, "ns"))
        with pytest.raises(errdefs.InvalidArgument):
            await store.view(lambda tx: tx.scan(NAMESPACES, "a", "b"))
    finally:
        await store.close()


async def test_get_reads_one_record_as_a_view_would(stores: StoreMaker) -> None:
    store = await stores.open()
    try:
        img = image("ns", "docker.io/x:1")
        assert await store.get(IMAGES, "ns", img.name) is None
        await store.update(lambda tx: tx.put(IMAGES, img))
        assert await store.get(IMAGES, "ns", img.name) == img
        assert await store.get(IMAGES, "other", img.name) is None
        assert await store.get(IMAGES, "ns", img.name) == img
        relabelled = records.Image("ns", img.name, img.target, {"new": "1"}, 1, 3)
        await store.update(lambda tx: tx.put(IMAGES, relabelled))
        assert await store.get(IMAGES, "ns", img.name) == relabelled
        await store.update(lambda tx: tx.delete(IMAGES, "ns", img.name))
        assert await store.get(IMAGES, "ns", img.name) is None
        with pytest.raises(errdefs.InvalidArgument, match="full key"):
            await store.get(IMAGES, "ns")
    finally:
        await store.close()
    with pytest.raises(errdefs.Unavailable):
        await store.get(IMAGES, "ns", "docker.io/x:1")


async def test_scan_reads_a_list_as_a_view_would(stores: StoreMaker) -> None:
    store = await stores.open()
    try:
        first = [image("ns", f"docker.io/x:{i}") for i in range(3)]

        def put_all(tx: Tx) -> None:
            for img in first:
                tx.put(IMAGES, img)
            tx.put(IMAGES, image("other", "docker.io/y:1"))

        await store.update(put_all)
        listed = await store.scan(IMAGES, "ns")
        assert listed == first == await store.view(lambda tx: tx.scan(IMAGES, "ns"))
        listed.clear()  # the caller's own list
        assert await store.scan(IMAGES, "ns") == first
        await store.update(lambda tx: tx.delete(IMAGES, "ns", first[0].name))
        assert await store.scan(IMAGES, "ns") == first[1:]
        assert [i.name for i in await store.scan(IMAGES)] == [
            *(i.name for i in first[1:]),
            "docker.io/y:1",
        ]
        with pytest.raises(errdefs.InvalidArgument):
            await store.scan(NAMESPACES, "a", "b")
    finally:
        await store.close()
    with pytest.raises(errdefs.Unavailable):
        await store.scan(IMAGES, "ns")


async def test_fields_are_those_of_the_records_scan_gives(stores: StoreMaker) -> None:
    store = await stores.open()
    try:
        images = [image(ns, f"docker.io/x:{i}") for ns in ("b", "a") for i in range(2)]
        c = records.Container(
            "a", "c1", "rt", b"\x0a\x01x", None, {}, "", "sn", "k", {"e": b"\x00"}
        )
        blob = records.Blob("a", DIGEST, 3, {"x": "y"}, 1, 2)

        def put(tx: Tx) -> None:
            for img in images:
                tx.put(IMAGES, img)
            tx.put(CONTAINERS, c)
            tx.put(BLOBS, blob)

        await store.update(put)

        def read(tx: Tx) -> list[list[tuple[object, ...]]]:
            return [
                tx.fields(IMAGES, ("namespace", "target", "labels")),
                tx.fields(IMAGES, ("name",), "a"),
                tx.fields(CONTAINERS, ("extensions", "spec", "snapshot_key")),
                tx.fields(BLOBS, ("digest", "labels")),
            ]

        every, names, containers, blobs = await store.view(read)
        assert every == [
            (i.namespace, i.target, i.labels) for i in await store.view(lambda tx: tx.scan(IMAGES))
        ]
        assert [ns for ns, _, _ in every] == ["a", "a", "b", "b"]
        assert names == [("docker.io/x:0",), ("docker.io/x:1",)]
        assert containers == [({"e": b"\x00"}, b"\x0a\x01x", "k")]
        assert blobs == [(DIGEST, {"x": "y"})]
        with pytest.raises(ValueError, match="no fields \\['nope'\\]"):
            await store.view(lambda tx: tx.fields(IMAGES, ("name", "nope")))
        with pytest.raises(errdefs.InvalidArgument):
            await store.view(lambda tx: tx.fields(NAMESPACES, ("name",), "a", "b"))
    finally:
        await store.close()


async def test_blobs_put_get_delete(stores: StoreMaker) -> None:
    store = await stores.open()
    try:
        blob = records.Blob("ns", DIGEST, 3, {"containerd.io/gc.root": "x"}, 1, 2)
        await store.update(lambda tx: tx.put(BLOBS, blob))
        assert await store.view(lambda tx: tx.get(BLOBS, "ns", DIGEST)) == blob
        assert await store.view(lambda tx: tx.get(BLOBS, "other", DIGEST)) is None
        assert await store.view(lambda tx: tx.scan(BLOBS, "ns")) == [blob]
        relabelled = records.Blob("ns", DIGEST, 3, {}, 1, 3)
        await store.update(lambda tx: tx.put(BLOBS, relabelled))
        assert await store.view(lambda tx: tx.scan(BLOBS)) == [relabelled]
        assert await store.view(lambda tx: tx.count(BLOBS, "ns")) == 1
        assert await store.update(lambda tx: tx.delete(BLOBS, "ns", DIGEST))
        assert not await store.update(lambda tx: tx.delete(BLOBS, "ns", DIGEST))
        assert await store.view(lambda tx: tx.scan(BLOBS)) == []
    finally:
        await store.close()


async def test_a_failing_transaction_leaves_nothing(stores: StoreMaker) -> None:
    store = await stores.open()
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


async def test_views_are_read_only(stores: StoreMaker) -> None:
    store = await stores.open()
    try:
        with pytest.raises(errdefs.InvalidArgument):
            await store.view(lambda tx: tx.put(NAMESPACES, records.Namespace("x")))
        with pytest.raises(errdefs.InvalidArgument):
            await store.view(lambda tx: tx.next_sequence())
    finally:
        await store.close()


async def test_sequence_only_grows_and_survives_reopen(stores: StoreMaker) -> None:
    store = await stores.open()
    a = await store.update(lambda tx: tx.next_sequence())
    b = await store.update(lambda tx: tx.next_sequence())
    await store.update(
        lambda tx: tx.put(LEASE_RESOURCES, records.LeaseResource("n", "l", "content", "d"))
    )
    await store.close()
    store = await stores.open()
    try:
        c = await store.update(lambda tx: tx.next_sequence())
        assert a < b < c
        assert len(await store.view(lambda tx: tx.scan(LEASE_RESOURCES, "n", "l"))) == 1
    finally:
        await store.close()


async def test_sequence_blocks_are_never_handed_out_twice(stores: StoreMaker) -> None:
    store = await stores.open()
    try:
        block = await store.update(lambda tx: tx.next_sequence(10))
        after = await store.update(lambda tx: tx.next_sequence())
        assert after == block + 10
        db = MetadataDB(store)
        taken = [await db.sequence() for _ in range(SEQUENCE_BLOCK + 3)]
        assert len(set(taken)) == len(taken) and min(taken) > after
        assert taken == sorted(taken)
        # the pool came from the store: the store's own numbers are past it
        assert await store.update(lambda tx: tx.next_sequence()) > max(taken)
    finally:
        await store.close()


async def test_closed_store_is_unavailable(stores: StoreMaker) -> None:
    store = await stores.open()
    await store.close()
    await store.close()
    with pytest.raises(errdefs.Unavailable):
        await store.view(lambda tx: tx.scan(NAMESPACES))


async def test_reads_see_a_consistent_snapshot_while_writes_go_on(stores: StoreMaker) -> None:
    store = await stores.open()
    try:

        async def writer() -> None:
            for i in range(30):

                def pair(tx: Tx, i: int = i) -> None:
                    tx.put(NAMESPACES, records.Namespace(f"a{i}"))
                    tx.put(NAMESPACES, records.Namespace(f"b{i}"))

                await store.update(pair)

        async def reader() -> None:
            for _ in range(30):
                names = await store.view(lambda tx: [n.name for n in tx.scan(NAMESPACES)])
                # Both halves of a transaction or neither.
                assert sum(n.startswith("a") for n in names) == sum(
                    n.startswith("b") for n in names
                )

        await asyncio.gather(writer(), reader(), reader())
    finally:
        await store.close()


async def _concurrently(store: MetadataStore, n: int, fn: object) -> list[object]:
    return list(await asyncio.gather(*(store.update(lambda tx, i=i: fn(tx, i)) for i in range(n))))  # type: ignore[operator]


async def test_concurrent_read_modify_writes_lose_nothing(stores: StoreMaker) -> None:
    store = await stores.open()
    try:

        def bump(tx: Tx, i: int) -> None:
            ns = tx.get(NAMESPACES, "counter") or records.Namespace("counter", {"n": "0"})
            tx.put(NAMESPACES, records.Namespace("counter", {"n": str(int(ns.labels["n"]) + 1)}))

        await _concurrently(store, 12, bump)
        final = await store.view(lambda tx: tx.get(NAMESPACES, "counter"))
        assert final is not None and final.labels["n"] == "12"
    finally:
        await store.close()


async def test_concurrent_scans_see_no_phantoms(stores: StoreMaker) -> None:
    """Each transaction names its record after how many it scanned (an
    insert phantom would repeat a name) and takes the first queued item (a
    delete phantom would take one twice)."""
    store = await stores.open()
    try:
        await store.update(
            lambda tx: [tx.put(IMAGES, image("queue", f"item{i:02}")) for i in range(10)]
        )

        def step(tx: Tx, i: int) -> None:
            n = tx.count(LEASES, "seen")
            tx.put(LEASES, records.Lease("seen", f"s{n:02}", {"by": str(i)}))
            first = tx.scan(IMAGES, "queue")[0]
            tx.delete(IMAGES, "queue", first.name)
            tx.put(
                CONTAINERS,
                records.Container("took", str(i), "rt", b"", labels={"item": first.name}),
            )

        await _concurrently(store, 10, step)
        seen = await store.view(lambda tx: tx.scan(LEASES, "seen"))
        assert [le.id for le in seen] == [f"s{n:02}" for n in range(10)]
        took = await store.view(lambda tx: tx.scan(CONTAINERS, "took"))
        assert sorted(c.labels["item"] for c in took) == [f"item{i:02}" for i in range(10)]
        assert await store.view(lambda tx: tx.scan(IMAGES, "queue")) == []
    finally:
        await store.close()
