"""Snapshots Stat through the metadata layer, on SQLite and etcd.

The kind of a key is fixed when the layer makes it (Prepare: active, View:
view, Commit: committed under the new name) and kept in its record; Stat
answers from the record alone, with what List (which asks the backend)
shows.  A record of unknown kind (an older database) is answered with the
backend's kind, as before.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator

import pytest

from api import errdefs
from daemon.metadata import records
from daemon.metadata.etcd import values
from daemon.metadata.store import SNAPSHOTS, Tx
from services.snapshotter.proxy import ProxySnapshotter
from services.snapshotter.snapshotter import Forwarding, Info, Kind, Snapshotter
from tests.metadata.conftest import maker
from tests.metadata.server import MetaServer, meta_server
from tests.support import short_tmpdir

ROOT = {"containerd.io/gc.root": "test"}
INHERITED = {"containerd.io/snapshot/owner": "test"}


class CountedStats(Forwarding):
    """The native backend, noting the keys it is asked to Stat."""

    def __init__(self, inner: Snapshotter) -> None:
        super().__init__(inner)
        self.stats: list[str] = []

    async def stat(self, key: str) -> Info:
        self.stats.append(key)
        return await super().stat(key)


@pytest.fixture
async def counted(
    backend: str, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[MetaServer, CountedStats]]:
    wrapped: list[CountedStats] = []

    def wrap(inner: Snapshotter) -> Snapshotter:
        wrapped.append(CountedStats(inner))
        return wrapped[0]

    with short_tmpdir("bm") as d:
        store = await maker(backend, d, request).open()
        async with meta_server(d, store=store, wrap=wrap) as server:
            yield server, wrapped[0]


def sn(ms: MetaServer, ns: str) -> ProxySnapshotter:
    return ProxySnapshotter(ms.channel, "native", namespace=ns)


async def test_stat_answers_from_the_record(counted: tuple[MetaServer, CountedStats]) -> None:
    ms, backend = counted
    a = sn(ms, "a")
    await a.prepare("extract", "", {**ROOT, **INHERITED, "mine": "1"})
    await a.commit("layer", "extract", {**ROOT, **INHERITED})
    await a.prepare("work", "layer", {**ROOT, "mine": "2"})
    await a.view("look", "layer", ROOT)
    updated = await a.update(Info("work", labels={"added": "x"}), "labels.added")

    layer, work, look = [await a.stat(k) for k in ("layer", "work", "look")]
    assert (layer.kind, layer.parent, layer.labels) == (Kind.COMMITTED, "", {**ROOT, **INHERITED})
    assert (work.kind, work.parent) == (Kind.ACTIVE, "layer")
    assert work.labels == {**ROOT, "mine": "2", "added": "x"} == updated.labels
    assert work.updated == updated.updated and work.updated > work.created
    assert (look.kind, look.parent, look.labels) == (Kind.VIEW, "layer", ROOT)
    # Committed under the new name: the active key is gone, with containerd's error.
    with pytest.raises(errdefs.NotFound, match="snapshot extract does not exist"):
        await a.stat("extract")
    with pytest.raises(errdefs.NotFound, match="snapshot layer does not exist"):
        await sn(ms, "b").stat("layer")
    assert backend.stats == []

    # What List shows (kinds from the backend) is what Stat answered.
    listed = {i.name: i async for i in a.walk()}
    assert listed == {"layer": layer, "work": work, "look": look}


async def test_a_record_of_unknown_kind_asks_the_backend(
    counted: tuple[MetaServer, CountedStats],
) -> None:
    ms, backend = counted
    a = sn(ms, "old")
    await a.prepare("base", "", {**ROOT, **INHERITED})
    await a.commit("layer", "base", {**ROOT, **INHERITED})
    await a.view("look", "layer", {**ROOT, "mine": "v"})
    db = ms.services.db
    fresh = {k: await a.stat(k) for k in ("layer", "look")}

    # A database written before kinds were kept: every record says 0.
    def forget_kinds(tx: Tx) -> None:
        for rec in tx.scan(SNAPSHOTS, "old", "native"):
            tx.put(SNAPSHOTS, dataclasses.replace(rec, kind=int(Kind.UNKNOWN)))

    await db.update(forget_kinds)
    recs = await db.view(lambda tx: {r.key: r for r in tx.scan(SNAPSHOTS, "old", "native")})
    assert {r.kind for r in recs.values()} == {int(Kind.UNKNOWN)}
    old = {k: await a.stat(k) for k in ("layer", "look")}
    assert old == fresh
    assert sorted(backend.stats) == sorted(r.backend_key for r in recs.values())
    # And as before, such a key is only as alive as its backend snapshot.
    await ms.snapshot_backend.remove(recs["look"].backend_key)
    with pytest.raises(errdefs.NotFound):
        await a.stat("look")


def test_an_etcd_value_without_a_kind_reads_as_unknown() -> None:
    rec = records.Snapshot("ns", "native", "k", "ns/1/k", "p", int(Kind.VIEW), ROOT, 1, 2)
    stored = json.loads(values.encode(rec))
    del stored["kind"]  # as a layout without kinds would have written it
    assert values.decode(records.Snapshot, json.dumps(stored).encode()) == dataclasses.replace(
        rec, kind=int(Kind.UNKNOWN)
    )
