"""The peer plugin's cluster index over the etcd metadata store, on a real etcd."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from api import errdefs
from daemon.metadata import records
from daemon.metadata.etcd.store import EtcdStore
from daemon.metadata.store import BLOBS
from daemon.peer.etcdindex import EtcdClusterIndex
from daemon.peer.index import ClusterIndex, Holder
from tests.metadata.stores import etcd_settings, open_etcd

pytestmark = [pytest.mark.etcd]

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
async def stores(tmp_path: Path, etcd_endpoints: list[str]) -> AsyncIterator[dict[str, EtcdStore]]:
    prefix = f"/ix-{uuid.uuid4().hex[:10]}"
    out = {
        n: await open_etcd(etcd_settings(etcd_endpoints, prefix, n, lease_ttl="2s"), tmp_path / n)
        for n in ("a", "b", "c")
    }
    try:
        yield out
    finally:
        for s in out.values():
            await s.close()


async def record(store: EtcdStore, ns: str = "default", **labels: str) -> None:
    blob = records.Blob(ns, DIGEST, 1234, labels, records.now_ns(), records.now_ns())
    await store.update(lambda tx: tx.put(BLOBS, blob))


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(15):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)


async def test_the_index_follows_records_holders_and_liveness(stores: dict[str, EtcdStore]) -> None:
    a, b, c = (EtcdClusterIndex(stores[n]) for n in "abc")
    assert isinstance(b, ClusterIndex)
    assert await b.lookup("default", DIGEST) is None
    await record(stores["a"], keep="1")
    info = await b.lookup("default", DIGEST)
    assert info is not None and (info.size, dict(info.labels)) == (1234, {"keep": "1"})
    assert await a.lookup("default", DIGEST) is None  # only other nodes count
    assert await b.lookup("other", DIGEST) is None
    # A holder counts for fetching once it published where to reach it.
    assert await b.holders("default", DIGEST) == []
    await a.publish("127.0.0.1:7001")
    await c.publish("127.0.0.1:7003")
    assert await b.holders("default", DIGEST) == [Holder("a", "127.0.0.1:7001")]
    await record(stores["c"], keep="1")
    assert await b.holders("default", DIGEST) == [
        Holder("a", "127.0.0.1:7001"),
        Holder("c", "127.0.0.1:7003"),
    ]  # oldest holder first
    # Labels change on the cluster's record, seen from every node.
    new = await b.update("default", DIGEST, lambda labels: {**labels, "src": "reg"})
    assert new is not None and dict(new.labels) == {"keep": "1", "src": "reg"}
    held = await stores["a"].view(lambda tx: tx.get(BLOBS, "default", DIGEST))
    assert held is not None and dict(held.labels) == {"keep": "1", "src": "reg"}
    assert await b.update("default", "sha256:" + "cd" * 32, lambda labels: labels) is None
    # A node whose live key is gone is no holder.
    await stores["a"].session.leave()
    assert await b.holders("default", DIGEST) == [Holder("c", "127.0.0.1:7003")]
    await stores["c"].session.leave()
    assert await b.lookup("default", DIGEST) is None


async def test_add_holder_needs_the_local_record(stores: dict[str, EtcdStore]) -> None:
    a, b = EtcdClusterIndex(stores["a"]), EtcdClusterIndex(stores["b"])
    with pytest.raises(errdefs.FailedPrecondition, match="records no content"):
        await b.add_holder("default", DIGEST)
    await record(stores["b"])
    await b.add_holder("default", DIGEST)
    await b.publish("127.0.0.1:7002")
    assert await a.holders("default", DIGEST) == [Holder("b", "127.0.0.1:7002")]


async def test_the_address_outlives_a_lapsed_lease(stores: dict[str, EtcdStore]) -> None:
    a = EtcdClusterIndex(stores["a"])
    await a.publish("127.0.0.1:7001")
    view = stores["b"].cluster
    assert (await view.live())["a"]["peer"] == "127.0.0.1:7001"
    session = stores["a"].session
    old = session.lease
    await stores["a"].client.lease_revoke(old, time.monotonic() + 5)

    async def back() -> bool:
        live = await view.live()
        return session.lease != old and live.get("a", {}).get("peer") == "127.0.0.1:7001"

    await until(back)
    await a.close()
