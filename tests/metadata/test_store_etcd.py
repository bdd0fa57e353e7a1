"""What only the etcd metadata store does: nodes sharing a cluster, the key
layout, commits in parts, liveness, and etcd out of reach (real etcd)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest

from api import errdefs
from api.etcd.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from daemon.metadata import records
from daemon.metadata.content import NamespacedContent
from daemon.metadata.db import MetadataDB
from daemon.metadata.etcd.kvtx import put_op
from daemon.metadata.etcd.layout import range_end
from daemon.metadata.etcd.store import Conflict, EtcdStore
from daemon.metadata.store import (
    BLOBS,
    CONTAINERS,
    IMAGES,
    LEASES,
    NAMESPACES,
    SNAPSHOTS,
    Tx,
)
from services.content.local import LocalContentStore
from tests.metadata.stores import etcd_settings, open_etcd
from tests.support import free_port, short_tmpdir
from tests.support.etcd import EtcdCluster, need_etcd

pytestmark = pytest.mark.etcd

DIGEST = "sha256:" + "b" * 64


def keys(endpoints: list[str], prefix: str) -> dict[str, bytes]:
    """Every key under ``prefix``, read straight from etcd."""
    p = prefix.encode()
    with grpc.insecure_channel(endpoints[0].removeprefix("http://")) as ch:
        resp = rpc_pb2_grpc.KVStub(ch).Range(
            rpc_pb2.RangeRequest(key=p, range_end=range_end(p)), timeout=5
        )
    return {kv.key.decode(): kv.value for kv in resp.kvs}


@pytest.fixture
def prefix() -> str:
    return f"/t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def two(
    etcd_endpoints: list[str], prefix: str, tmp_path: Path
) -> AsyncIterator[tuple[EtcdStore, EtcdStore]]:
    a = await open_etcd(etcd_settings(etcd_endpoints, prefix, "a"), tmp_path / "a")
    b = await open_etcd(etcd_settings(etcd_endpoints, prefix, "b"), tmp_path / "b")
    try:
        yield a, b
    finally:
        await b.close()
        await a.close()


def blob(ns: str, digest: str = DIGEST, **labels: str) -> records.Blob:
    return records.Blob(ns, digest, 3, labels, 1, 1)


async def test_cluster_tables_are_shared_and_node_tables_are_not(
    two: tuple[EtcdStore, EtcdStore],
) -> None:
    a, b = two

    def put(tx: Tx) -> None:
        tx.put(NAMESPACES, records.Namespace("ns", {"k": "v"}))
        tx.put(IMAGES, records.Image("ns", "img", records.Descriptor("m", DIGEST, 3)))
        tx.put(CONTAINERS, records.Container("ns", "c", "rt", b""))
        tx.put(LEASES, records.Lease("ns", "l"))
        tx.put(SNAPSHOTS, records.Snapshot("ns", "native", "k", "ns/1/k"))

    await a.update(put)

    def seen(tx: Tx) -> tuple[int, ...]:
        return tuple(len(tx.scan(t)) for t in (NAMESPACES, IMAGES, CONTAINERS, LEASES, SNAPSHOTS))

    assert await a.view(seen) == (1, 1, 1, 1, 1)
    assert await b.view(seen) == (1, 1, 0, 0, 0)
    # The same ids on b are b's own.
    await b.update(lambda tx: tx.put(CONTAINERS, records.Container("ns", "c", "other", b"")))
    ca = await a.view(lambda tx: tx.get(CONTAINERS, "ns", "c"))
    cb = await b.view(lambda tx: tx.get(CONTAINERS, "ns", "c"))
    assert ca is not None and cb is not None
    assert (ca.runtime_name, cb.runtime_name) == ("rt", "other")


async def test_a_blob_is_seen_by_its_holders_and_goes_with_the_last(
    two: tuple[EtcdStore, EtcdStore], etcd_endpoints: list[str], prefix: str
) -> None:
    a, b = two
    await a.update(lambda tx: tx.put(BLOBS, blob("ns", gc="x")))
    assert await a.view(lambda tx: tx.get(BLOBS, "ns", DIGEST)) == blob("ns", gc="x")
    assert await b.view(lambda tx: tx.get(BLOBS, "ns", DIGEST)) is None
    assert await b.view(lambda tx: tx.scan(BLOBS)) == []
    await b.update(lambda tx: tx.put(BLOBS, blob("ns", gc="x")))
    assert [h.node for h in await a.cluster.holders("ns", DIGEST)] == ["a", "b"]
    stored = keys(etcd_endpoints, prefix)
    record = f"{prefix}/cluster/blobs/ns/{DIGEST}"
    assert json.loads(stored[record])["size"] == 3
    assert f"{prefix}/cluster/holders/ns/{DIGEST}/a" in stored
    assert f"{prefix}/node/b/blobs/ns/{DIGEST}" in stored

    assert await a.update(lambda tx: tx.delete(BLOBS, "ns", DIGEST))
    assert record in keys(etcd_endpoints, prefix)  # b still holds it
    assert await b.view(lambda tx: tx.count(BLOBS, "ns")) == 1
    assert await b.update(lambda tx: tx.delete(BLOBS, "ns", DIGEST))
    left = keys(etcd_endpoints, prefix)
    assert not [k for k in left if DIGEST in k], left


async def test_holders_count_only_while_their_node_is_live(
    etcd_endpoints: list[str], prefix: str, tmp_path: Path
) -> None:
    a = await open_etcd(etcd_settings(etcd_endpoints, prefix, "a"), tmp_path / "a")
    b = await open_etcd(etcd_settings(etcd_endpoints, prefix, "b"), tmp_path / "b")
    try:
        await a.update(lambda tx: tx.put(BLOBS, blob("ns")))
        await b.update(lambda tx: tx.put(BLOBS, blob("ns")))
        assert [(h.node, h.live) for h in await a.cluster.holders("ns", DIGEST)] == [
            ("a", True),
            ("b", True),
        ]
        await b.close()  # revokes b's lease: its live key goes
        assert [(h.node, h.live) for h in await a.cluster.holders("ns", DIGEST)] == [
            ("a", True),
            ("b", False),
        ]
        nodes = {n.name: n for n in await a.cluster.nodes()}
        assert nodes["a"].live and not nodes["b"].live
        assert (nodes["a"].blobs, nodes["b"].blobs) == (1, 1)
        alone = asyncio.Event()
        a.watch.on_nodes.append(lambda nodes: alone.set() if nodes == ["a"] else None)
        if a.live_nodes != ["a"]:
            await asyncio.wait_for(alone.wait(), 10)
        assert a.live_nodes == ["a"]
    finally:
        await b.close()
        await a.close()


async def test_a_namespace_in_use_on_another_node_cannot_be_deleted(
    two: tuple[EtcdStore, EtcdStore],
) -> None:
    a, b = two
    await a.update(lambda tx: tx.put(NAMESPACES, records.Namespace("ns")))
    await b.update(lambda tx: tx.put(CONTAINERS, records.Container("ns", "c", "rt", b"")))
    with pytest.raises(errdefs.FailedPrecondition, match='node "b" still has containers'):
        await a.update(lambda tx: tx.delete(NAMESPACES, "ns"))
    await b.update(lambda tx: tx.delete(CONTAINERS, "ns", "c"))
    assert await a.update(lambda tx: tx.delete(NAMESPACES, "ns"))


async def test_concurrent_writers_on_two_nodes_serialize(
    two: tuple[EtcdStore, EtcdStore],
) -> None:
    a, b = two

    def take(tx: Tx, node: str, i: int) -> None:
        # "Create if absent" on a cluster key, from both nodes at once.
        if tx.get(IMAGES, "ns", "once") is None:
            tx.put(IMAGES, records.Image("ns", "once", records.Descriptor("m", DIGEST, 1)))
            tx.put(LEASES, records.Lease("won", f"{node}{i}"))

    await asyncio.gather(
        *(s.update(lambda tx, s=s, i=i: take(tx, s.node, i)) for s in (a, b) for i in range(6))
    )
    winners = await a.view(lambda tx: tx.scan(LEASES, "won")) + await b.view(
        lambda tx: tx.scan(LEASES, "won")
    )
    assert len(winners) == 1
    assert a.stats["conflicts"] + b.stats["conflicts"] > 0


async def test_a_transaction_that_keeps_conflicting_is_aborted_and_etcd_stays_up(
    etcd_endpoints: list[str], prefix: str, tmp_path: Path
) -> None:
    a = await open_etcd(etcd_settings(etcd_endpoints, prefix, "a", request_timeout="1s"))
    b = await open_etcd(etcd_settings(etcd_endpoints, prefix, "b"))
    loop = asyncio.get_running_loop()
    runs = 0

    def meddled(tx: Tx) -> None:
        # Every run reads the image, then another node changes it before
        # this one can commit: the commit's guard fails every time.
        nonlocal runs
        runs += 1
        tx.get(IMAGES, "ns", "hot")
        hot = records.Image("ns", "hot", records.Descriptor("m", DIGEST, runs))
        asyncio.run_coroutine_threadsafe(b.update(lambda t: t.put(IMAGES, hot)), loop).result()
        tx.put(LEASES, records.Lease("ns", "never"))

    try:
        with pytest.raises(errdefs.Aborted, match="kept conflicting with other writers for 1s"):
            await a.update(meddled)
        assert runs > 1 and a.stats["conflicts"] >= runs - 1
        assert a.up, a.state
        assert await a.get(LEASES, "ns", "never") is None
    finally:
        await b.close()
        await a.close()


async def test_concurrent_ingests_of_one_namespace_do_not_conflict(
    etcd_endpoints: list[str], prefix: str, tmp_path: Path
) -> None:
    """Each new ingest takes a number for its backend ref; taken from a counter
    in etcd inside every begin, concurrent ingests conflicted on it."""
    store = await open_etcd(etcd_settings(etcd_endpoints, prefix))
    db = MetadataDB(store)
    content = NamespacedContent(db, LocalContentStore(tmp_path / "content"))
    try:
        # (The first writes of a namespace all create it: those may conflict.)
        await store.update(lambda tx: tx.put(NAMESPACES, records.Namespace("ns")))

        async def one(i: int) -> str:
            data = os.urandom(64)
            w = await content.writer("ns", f"ref-{i}", len(data))
            await w.write(data)
            return await w.commit(len(data), "sha256:" + hashlib.sha256(data).hexdigest())

        digests = await asyncio.gather(*(one(i) for i in range(24)))
        assert len({(await content.info("ns", d)).digest for d in digests}) == 24
        assert store.stats["conflicts"] == 0
    finally:
        await db.close()


async def test_a_sweep_larger_than_one_etcd_txn_commits_in_parts(
    etcd_endpoints: list[str], prefix: str, tmp_path: Path
) -> None:
    store = await open_etcd(etcd_settings(etcd_endpoints, prefix, max_txn_ops=16), tmp_path)
    try:
        for part in range(4):
            await store.update(
                lambda tx, part=part: [
                    tx.put(SNAPSHOTS, records.Snapshot(f"ns{i % 3}", "native", f"k{part}-{i}", "b"))
                    for i in range(10)
                ]
            )

        def drop_all(tx: Tx) -> int:
            snaps = tx.scan(SNAPSHOTS)
            for s in snaps:
                tx.delete(SNAPSHOTS, s.namespace, s.snapshotter, s.key)
            return len(snaps)

        with pytest.raises(errdefs.ResourceExhausted, match="max_txn_ops"):
            await store.update(drop_all)
        assert await store.view(lambda tx: tx.count(SNAPSHOTS)) == 40
        assert await store.update_divisible(drop_all) == 40
        assert store.stats["chunks"] > 1
        assert await store.view(lambda tx: tx.count(SNAPSHOTS)) == 0
    finally:
        await store.close()


class Interleaved(EtcdStore):
    """An etcd store that lets another writer in right after its first commit
    (real etcd; only the timing is chosen)."""

    after_first_commit: Callable[[], Awaitable[object]] | None = None

    async def _send(self, req: rpc_pb2.TxnRequest, deadline: float) -> int:
        rev = await super()._send(req, deadline)
        hook, self.after_first_commit = self.after_first_commit, None
        if hook is not None:
            await hook()
        return rev


async def test_a_part_that_finds_the_state_changed_stops_the_sweep(
    etcd_endpoints: list[str], prefix: str, tmp_path: Path
) -> None:
    """The first part of a sweep lands, then another node starts referencing
    something the next part would remove: that part fails, what the first
    removed stays removed, and the sweep runs again on the new state."""
    store = Interleaved(etcd_settings(etcd_endpoints, prefix, max_txn_ops=16), root=str(tmp_path))
    await store.start(wait=5)
    other = await open_etcd(etcd_settings(etcd_endpoints, prefix, "o"), tmp_path / "o")
    try:
        for part in range(3):
            await store.update(
                lambda tx, part=part: [
                    tx.put(LEASES, records.Lease("ns", f"l{part}{i}")) for i in range(10)
                ]
            )
        runs: list[int] = []

        def sweep(tx: Tx) -> int:
            keep = tx.get(NAMESPACES, "keep")
            kept = set((keep.labels if keep else {}).values())
            doomed = [le for le in tx.scan(LEASES, "ns") if le.id not in kept]
            for le in doomed:
                tx.delete(LEASES, "ns", le.id)
            runs.append(len(doomed))
            return len(doomed)

        store.after_first_commit = lambda: other.update(
            lambda t: t.put(NAMESPACES, records.Namespace("keep", {"a": "l29"}))
        )
        await store.update_divisible(sweep)
        assert len(runs) == 2 and runs[0] == 30 and 0 < runs[1] < 29
        left = await store.view(lambda tx: tx.scan(LEASES, "ns"))
        assert [le.id for le in left] == ["l29"]
    finally:
        await other.close()
        await store.close()


async def test_an_unknown_commit_outcome_is_settled_by_reading_back(
    etcd_endpoints: list[str], prefix: str, tmp_path: Path
) -> None:
    store = await open_etcd(etcd_settings(etcd_endpoints, prefix), tmp_path)
    try:
        key = f"{prefix}/probe".encode()
        applied = rpc_pb2.TxnRequest(success=[put_op(key, b"v1")])
        deadline = time.monotonic() + 5
        rev = (await store.client.txn(applied, deadline)).header.revision
        assert await store._applied(applied, deadline) == rev
        lost = rpc_pb2.TxnRequest(success=[put_op(key, b"v2")])
        with pytest.raises(Conflict):
            await store._applied(lost, deadline)
    finally:
        await store.close()


async def test_a_transaction_reading_many_keys_still_commits(
    etcd_endpoints: list[str], prefix: str, tmp_path: Path
) -> None:
    """More reads than etcd takes compares in one Txn: the conditions are
    folded into their spaces' guards."""
    store = await open_etcd(etcd_settings(etcd_endpoints, prefix, max_txn_ops=16), tmp_path)
    try:

        def many(tx: Tx) -> None:
            for i in range(40):
                tx.get(IMAGES, "ns", f"i{i}")
            tx.put(IMAGES, records.Image("ns", "i0", records.Descriptor("m", DIGEST, 1)))

        await store.update(many)
        assert await store.view(lambda tx: tx.count(IMAGES, "ns")) == 1
    finally:
        await store.close()


async def test_a_newer_layout_is_refused(
    etcd_endpoints: list[str], prefix: str, tmp_path: Path
) -> None:
    with grpc.insecure_channel(etcd_endpoints[0].removeprefix("http://")) as ch:
        rpc_pb2_grpc.KVStub(ch).Put(
            rpc_pb2.PutRequest(key=f"{prefix}/version".encode(), value=b"99"), timeout=5
        )
    store = EtcdStore(etcd_settings(etcd_endpoints, prefix), root=str(tmp_path))
    try:
        with pytest.raises(errdefs.FailedPrecondition, match="layout '99', newer"):
            await store.start(wait=5)
    finally:
        await store.close()


async def test_a_node_name_in_use_is_refused_and_a_dead_one_taken_over(
    etcd_endpoints: list[str], prefix: str, tmp_path: Path
) -> None:
    a = await open_etcd(etcd_settings(etcd_endpoints, prefix, "n"), tmp_path / "a")
    try:
        twin = EtcdStore(etcd_settings(etcd_endpoints, prefix, "n"), root=str(tmp_path / "b"))
        try:
            with pytest.raises(errdefs.FailedPrecondition, match="node name 'n' is in use"):
                await twin.start(wait=5)
        finally:
            await twin.close()
    finally:
        await a.close()
    # A live key left by a process of this root that is gone (kill -9) is ours.
    key = f"{prefix}/nodes/n".encode()
    gone = {"node": "n", "host": a.session.host, "pid": 999_999_999, "start": "1", "root": ""}
    gone["root"] = str((tmp_path / "a").absolute())
    with grpc.insecure_channel(etcd_endpoints[0].removeprefix("http://")) as ch:
        lease = rpc_pb2_grpc.LeaseStub(ch).LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=60))
        rpc_pb2_grpc.KVStub(ch).Put(
            rpc_pb2.PutRequest(key=key, value=json.dumps(gone).encode(), lease=lease.ID)
        )
    again = await open_etcd(etcd_settings(etcd_endpoints, prefix, "n"), tmp_path / "a")
    try:
        assert again.up
        assert json.loads(keys(etcd_endpoints, f"{prefix}/nodes/")[key.decode()])["pid"] > 0
        assert again.session.lease != lease.ID
    finally:
        await again.close()


async def test_etcd_down_is_unavailable_within_the_timeout_and_then_recovers(
    tmp_path: Path,
) -> None:
    need_etcd()
    with short_tmpdir("ed") as d:
        cluster = EtcdCluster(d, 1)
        settings = etcd_settings(cluster.endpoints, "/t", request_timeout="1s")
        store = EtcdStore(settings, root=str(tmp_path))
        changes: list[bool] = []
        store.on_change(changes.append)
        try:
            await store.start(wait=0.5)  # nothing listens yet: no error
            assert not store.up and store.state.startswith("unavailable")
            with pytest.raises(errdefs.Unavailable, match=r"etcd http://127\.0\.0\.1"):
                await store.update(lambda tx: tx.put(NAMESPACES, records.Namespace("x")))
            cluster.start()
            await store.update(lambda tx: tx.put(NAMESPACES, records.Namespace("x")))
            assert store.up and store.state == "ok" and changes[-1] is True
            assert [n.name for n in await store.view(lambda tx: tx.scan(NAMESPACES))] == ["x"]
        finally:
            await store.close()
            cluster.stop()


async def test_a_commit_etcd_hangs_on_is_of_unknown_outcome_and_etcd_is_down(
    tmp_path: Path,
) -> None:
    """etcd stops answering (paused) while a write is sent: the Txn takes the
    time left, so the check of whether it was applied cannot run either."""
    need_etcd()
    with short_tmpdir("eh") as d:
        cluster = EtcdCluster(d, 1).start()
        store = await open_etcd(etcd_settings(cluster.endpoints, "/t", request_timeout="1s"))
        member = cluster.members[0].proc
        assert member is not None
        try:
            await store.update(lambda tx: tx.put(NAMESPACES, records.Namespace("x")))
            member.signal(signal.SIGSTOP)
            try:
                with pytest.raises(errdefs.Unavailable, match="commit outcome unknown"):
                    await store.update(lambda tx: tx.put(NAMESPACES, records.Namespace("y")))
                assert not store.up
            finally:
                member.signal(signal.SIGCONT)
            await store.update(lambda tx: tx.put(NAMESPACES, records.Namespace("z")))
            assert store.up
        finally:
            await store.close()
            cluster.stop()


def test_settings_name_the_bad_key(tmp_path: Path) -> None:
    from daemon.tomlcodec import FieldError

    def attempt(**kw: object) -> str:
        args: dict[str, object] = {
            "endpoints": ["http://127.0.0.1:2379"],
            "prefix": "/p",
            "node": "n",
            "request_timeout": "5s",
            "max_txn_ops": 128,
        }
        args.update(kw)
        try:
            etcd_settings(**args)  # type: ignore[arg-type]
        except FieldError as e:
            return e.key
        return ""

    assert attempt(endpoints=[]) == "endpoints"
    assert attempt(endpoints=["ftp://x:1"]) == "endpoints"
    assert attempt(endpoints=["http://no-such-host.invalid:2379"]) == "endpoints"
    assert attempt(endpoints=["http://127.0.0.1:99999"]) == "endpoints"
    assert attempt(prefix="relative") == "prefix"
    assert attempt(node="a/b") == "node"
    assert attempt(request_timeout="soon") == "request_timeout"
    assert attempt(max_txn_ops=2) == "max_txn_ops"
    assert attempt() == ""
    assert free_port() > 0
