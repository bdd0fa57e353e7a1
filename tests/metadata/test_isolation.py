"""Nothing created in one namespace can be seen, changed or deleted from another:
every kind of object, every call that names one."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from api import errdefs
from services.content.proxy import ProxyContentStore
from services.content.store import Info as ContentInfo
from services.snapshotter.proxy import ProxySnapshotter
from services.snapshotter.snapshotter import Info
from tests.conformance.leases import temporary_lease
from tests.metadata.server import MetaServer

ROOT = {"containerd.io/gc.root": "x"}


async def test_content_and_snapshots_of_one_namespace_are_out_of_reach(ms: MetaServer) -> None:
    async with temporary_lease(ms.channel, "mine") as lease:
        mine = ProxyContentStore(ms.channel, namespace="mine", metadata=(lease,))
        theirs = ProxyContentStore(ms.channel, namespace="theirs")
        data = b"private"
        dgst = "sha256:" + hashlib.sha256(data).hexdigest()
        w = await mine.writer("ref", len(data))
        await w.write(data)
        await w.commit(len(data), dgst)
        w = await mine.writer("open-ingest", 10)
        await w.write(b"abc")
        await w.close()

        now = datetime.now(UTC)
        for call in (
            theirs.info(dgst),
            theirs.reader(dgst),
            theirs.delete(dgst),
            theirs.update(ContentInfo(dgst, 0, now, now, {"x": "y"})),
            theirs.status("open-ingest"),
            theirs.abort("open-ingest"),
        ):
            with pytest.raises(errdefs.NotFound):
                await call
        assert [i async for i in theirs.walk()] == []
        assert await theirs.list_statuses() == []
        # Still all there for the owner.
        assert (await mine.info(dgst)).labels == {}
        assert (await mine.status("open-ingest")).offset == 3

    a = ProxySnapshotter(ms.channel, "native", namespace="mine")
    b = ProxySnapshotter(ms.channel, "native", namespace="theirs")
    await a.prepare("base-work", "", ROOT)
    await a.commit("base", "base-work", ROOT)
    await a.prepare("active", "base", ROOT)
    for call in (
        b.stat("base"),
        b.usage("base"),
        b.mounts("active"),
        b.update(Info("base", labels={"x": "y"}), "labels.x"),
        b.commit("stolen", "active"),
        b.remove("active"),
        b.prepare("child", "base"),
        b.view("view", "base"),
    ):
        with pytest.raises(errdefs.NotFound):
            await call
    assert [i async for i in b.walk()] == []
    assert (await a.stat("base")).labels == ROOT
    assert (await a.stat("active")).parent == "base"
