"""GC property test: random sequences of content, image, lease, snapshot and
container operations; after every collection, everything still referenced is
there (metadata and backends) and everything unreferenced is gone.

The reference semantics are re-derived here from containerd's rules, in the
simplest form (a model of the objects and their edges), independently of
``daemon.metadata.gc``.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api import errdefs
from daemon.events.exchange import Exchange
from daemon.metadata import records
from daemon.metadata.services import MetadataServices
from daemon.metadata.sqlite import SqliteStore
from daemon.metadata.store import BLOBS, LEASES, SNAPSHOTS, MetadataStore
from services.content.local import LocalContentStore
from services.snapshotter.native import NativeSnapshotter
from tests.metadata.stores import etcd_settings, open_etcd

NAMESPACES = ("a", "b")
SN = "native"
PAST = "2000-01-01T00:00:00Z"
FUTURE = "2999-01-01T00:00:00Z"
MT = "application/octet-stream"


@dataclass
class Blob:
    content_refs: list[str]
    snapshot_refs: list[str]
    root: bool


@dataclass
class Snap:
    parent: str
    committed: bool
    refs: list[str] = field(default_factory=list)  # gc.ref.content labels (on commit)
    root: bool = False


@dataclass
class Lease:
    flat: bool
    expired: bool
    content: set[str] = field(default_factory=set)
    snapshots: set[str] = field(default_factory=set)


@dataclass
class Model:
    blobs: dict[tuple[str, str], Blob] = field(default_factory=dict)
    images: dict[tuple[str, str], str] = field(default_factory=dict)
    snaps: dict[tuple[str, str], Snap] = field(default_factory=dict)
    leases: dict[tuple[str, str], Lease] = field(default_factory=dict)
    containers: dict[tuple[str, str], str] = field(default_factory=dict)

    def reachable(self) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        """(blobs, snapshots) reachable from the roots, by containerd's rules."""
        blobs: set[tuple[str, str]] = set()
        snaps: set[tuple[str, str]] = set()
        # (kind, ns, key, flat)
        todo: list[tuple[str, str, str, bool]] = []
        for (ns, _), d in self.images.items():
            todo.append(("c", ns, d, False))
        for (ns, d), b in self.blobs.items():
            if b.root:
                todo.append(("c", ns, d, False))
        for (ns, k), s in self.snaps.items():
            if s.root:
                todo.append(("s", ns, k, False))
        for (ns, _), key in self.containers.items():
            todo.append(("s", ns, key, False))
        for (ns, _), lease in self.leases.items():
            if lease.expired:
                continue
            todo += [("c", ns, d, lease.flat) for d in lease.content]
            todo += [("s", ns, k, lease.flat) for k in lease.snapshots]
        seen: set[tuple[str, str, str, bool]] = set()
        while todo:
            item = todo.pop()
            if item in seen:
                continue
            seen.add(item)
            kind, ns, key, flat = item
            if kind == "c":
                b = self.blobs.get((ns, key))
                if b is None:
                    continue
                blobs.add((ns, key))
                if not flat:
                    todo += [("c", ns, d, False) for d in b.content_refs]
                    todo += [("s", ns, k, False) for k in b.snapshot_refs]
            else:
                s = self.snaps.get((ns, key))
                if s is None:
                    continue
                snaps.add((ns, key))
                if s.parent:
                    todo.append(("s", ns, s.parent, flat))
                if not flat:
                    todo += [("c", ns, d, False) for d in s.refs]
        return blobs, snaps


class World:
    """The real metadata layer over real backends, and the model beside it."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, root: Path, etcd: list[str] | None = None
    ) -> None:
        self.loop = loop
        self.content = LocalContentStore(root / "content")
        self.snap = NativeSnapshotter(root / "native")
        store: MetadataStore
        if etcd is None:
            store = SqliteStore(root / "meta.db", synchronous="OFF")
        else:
            prefix = f"/gc-{uuid.uuid4().hex[:10]}"
            store = self.run(open_etcd(etcd_settings(etcd, prefix), root / "node"))
        self.svc = MetadataServices(store, self.content, {SN: self.snap}, Exchange())
        self.model = Model()
        self.counter = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.svc.close())
        self.run(self.snap.close())

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def pick(self, keys: list[Any], i: int | None) -> Any:
        return sorted(keys)[i % len(keys)] if keys and i is not None else None

    def in_ns(self, table: dict[tuple[str, str], Any], ns: str) -> list[str]:
        return [k for (n, k) in table if n == ns]

    def lease_in(self, ns: str, i: int | None) -> str:
        live = [k for (n, k), le in self.model.leases.items() if n == ns]
        return self.pick(live, i) or ""

    # -- operations: each takes plain values drawn by ``OPS`` ------------------

    def write_blob(
        self,
        ns: str,
        data: bytes,
        refs: list[int],
        snap_refs: list[int],
        root: bool,
        lease: int | None,
    ) -> None:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs = self.in_ns(self.model.blobs, ns)
        snaps = self.in_ns(self.model.snaps, ns)
        content_refs = [self.pick(blobs, i) for i in refs] if blobs else []
        snapshot_refs = [self.pick(snaps, i) for i in snap_refs] if snaps else []
        labels = {f"containerd.io/gc.ref.content.{i}": d for i, d in enumerate(content_refs)}
        labels |= {
            f"containerd.io/gc.ref.snapshot.{SN}/{i}": k for i, k in enumerate(snapshot_refs)
        }
        if root:
            labels["containerd.io/gc.root"] = "x"
        lease_id = self.lease_in(ns, lease)
        assert self.svc.content is not None
        content = self.svc.content

        async def go() -> None:
            w = await content.writer(ns, self.fresh("ref"), len(data), lease=lease_id)
            await w.write(data)
            await w.commit(len(data), digest, labels)

        try:
            self.run(go())
        except errdefs.AlreadyExists:
            pass  # already in this namespace: its labels stay
        else:
            self.model.blobs[(ns, digest)] = Blob(content_refs, snapshot_refs, root)
        if lease_id:
            self.model.leases[(ns, lease_id)].content.add(digest)

    def delete_blob(self, ns: str, i: int) -> None:
        digest = self.pick(self.in_ns(self.model.blobs, ns), i)
        if digest is not None:
            assert self.svc.content is not None
            self.run(self.svc.content.delete(ns, digest))
            del self.model.blobs[(ns, digest)]

    def create_image(self, ns: str, i: int) -> None:
        digest = self.pick(self.in_ns(self.model.blobs, ns), i)
        if digest is not None:
            name = self.fresh("img")
            self.run(
                self.svc.images.create(records.Image(ns, name, records.Descriptor(MT, digest, 1)))
            )
            self.model.images[(ns, name)] = digest

    def delete_image(self, i: int) -> None:
        key = self.pick(list(self.model.images), i)
        if key is not None:
            self.run(self.svc.images.delete(*key))
            del self.model.images[key]

    def create_lease(self, ns: str, flat: bool, expired: bool) -> None:
        lid = self.fresh("lease")
        labels = {"containerd.io/gc.expire": PAST if expired else FUTURE}
        if flat:
            labels["containerd.io/gc.flat"] = "1"
        self.run(self.svc.leases.create(ns, lid, labels))
        self.model.leases[(ns, lid)] = Lease(flat, expired)

    def lease_blob(self, ns: str, lease: int, i: int) -> None:
        lid = self.lease_in(ns, lease)
        digest = self.pick(self.in_ns(self.model.blobs, ns), i)
        if lid and digest:
            self.run(self.svc.leases.add_resource(ns, lid, "content", digest))
            self.model.leases[(ns, lid)].content.add(digest)

    def delete_lease(self, ns: str, lease: int) -> None:
        lid = self.lease_in(ns, lease)
        if lid:
            self.run(self.svc.leases.delete(ns, lid))
            del self.model.leases[(ns, lid)]

    def prepare(self, ns: str, parent: int | None, lease: int | None, root: bool) -> None:
        committed = [k for (n, k), s in self.model.snaps.items() if n == ns and s.committed]
        parent_key = self.pick(committed, parent) or ""
        lease_id = self.lease_in(ns, lease)
        key = self.fresh("active")
        labels = {"containerd.io/gc.root": "x"} if root else {}
        self.run(self.svc.snapshotters[SN].prepare(ns, key, parent_key, labels, lease_id))
        self.model.snaps[(ns, key)] = Snap(parent_key, False, root=root)
        if lease_id:
            self.model.leases[(ns, lease_id)].snapshots.add(key)

    def commit(self, ns: str, i: int, ref: int | None, root: bool, lease: int | None) -> None:
        active = [k for (n, k), s in self.model.snaps.items() if n == ns and not s.committed]
        key = self.pick(active, i)
        if key is None:
            return
        name = self.fresh("layer")
        refs = [d for d in [self.pick(self.in_ns(self.model.blobs, ns), ref)] if d]
        labels = {"containerd.io/gc.ref.content.layer": refs[0]} if refs else {}
        if root:
            labels["containerd.io/gc.root"] = "x"
        lease_id = self.lease_in(ns, lease)
        self.run(self.svc.snapshotters[SN].commit(ns, name, key, labels, lease_id))
        old = self.model.snaps.pop((ns, key))
        self.model.snaps[(ns, name)] = Snap(old.parent, True, refs, root)
        if lease_id:
            self.model.leases[(ns, lease_id)].snapshots.add(name)

    def remove_snapshot(self, ns: str, i: int) -> None:
        key = self.pick(self.in_ns(self.model.snaps, ns), i)
        if key is None or any(s.parent == key for (n, _), s in self.model.snaps.items() if n == ns):
            return
        self.run(self.svc.snapshotters[SN].remove(ns, key))
        del self.model.snaps[(ns, key)]

    def create_container(self, ns: str, i: int) -> None:
        key = self.pick(self.in_ns(self.model.snaps, ns), i)
        if key is not None:
            cid = self.fresh("c")
            c = records.Container(
                ns, cid, "io.containerd.runc.v2", b"", snapshotter=SN, snapshot_key=key
            )
            self.run(self.svc.containers.create(c))
            self.model.containers[(ns, cid)] = key

    def delete_container(self, i: int) -> None:
        key = self.pick(list(self.model.containers), i)
        if key is not None:
            self.run(self.svc.containers.delete(*key))
            del self.model.containers[key]

    def collect(self) -> None:
        self.run(self.svc.collector.collect())
        blobs, snaps = self.model.reachable()
        for key in list(self.model.blobs):
            if key not in blobs:
                del self.model.blobs[key]
        for key in list(self.model.snaps):
            if key not in snaps:
                del self.model.snaps[key]
        for key, lease in list(self.model.leases.items()):
            if lease.expired:
                del self.model.leases[key]
        # The backends hold exactly what the metadata records.
        content, backend_snaps, recorded = self.run(self.backends())
        assert content == {d for (_, d) in self.model.blobs}
        assert backend_snaps == recorded

    async def backends(self) -> tuple[set[str], set[str], set[str]]:
        content = {i.digest async for i in self.content.walk()}
        snaps = {i.name async for i in self.snap.walk()}
        recs = await self.svc.db.view(lambda tx: tx.scan(SNAPSHOTS))
        return content, snaps, {r.backend_key for r in recs}

    def check_metadata(self) -> None:
        """Nothing referenced was ever collected; nothing unreferenced survived a
        collection (the model drops exactly what the rules make unreachable)."""

        def read(tx: Any) -> tuple[set[Any], set[Any], set[Any]]:
            return (
                {(b.namespace, b.digest) for b in tx.scan(BLOBS)},
                {(s.namespace, s.key) for s in tx.scan(SNAPSHOTS)},
                {(le.namespace, le.id) for le in tx.scan(LEASES)},
            )

        blobs, snaps, leases = self.run(self.svc.db.view(read))
        assert blobs == set(self.model.blobs)
        assert snaps == set(self.model.snaps)
        assert leases == set(self.model.leases)


# Mostly one namespace, so operations meet each other; sometimes the other.
ns_ = st.sampled_from(("a", "a", "a", "b"))
idx = st.integers(0, 7)
opt = st.one_of(st.none(), idx)
OPS = st.one_of(
    st.tuples(
        st.just("write_blob"),
        ns_,
        st.binary(min_size=1, max_size=4),
        st.lists(idx, max_size=3),
        st.lists(idx, max_size=2),
        st.booleans(),
        opt,
    ),
    st.tuples(st.just("delete_blob"), ns_, idx),
    st.tuples(st.just("create_image"), ns_, idx),
    st.tuples(st.just("delete_image"), idx),
    st.tuples(st.just("create_lease"), ns_, st.booleans(), st.booleans()),
    st.tuples(st.just("lease_blob"), ns_, idx, idx),
    st.tuples(st.just("delete_lease"), ns_, idx),
    st.tuples(st.just("prepare"), ns_, opt, opt, st.booleans()),
    st.tuples(st.just("prepare"), ns_, idx, opt, st.booleans()),
    st.tuples(st.just("commit"), ns_, idx, opt, st.booleans(), opt),
    st.tuples(st.just("commit"), ns_, idx, opt, st.booleans(), opt),
    st.tuples(st.just("remove_snapshot"), ns_, idx),
    st.tuples(st.just("create_container"), ns_, idx),
    st.tuples(st.just("delete_container"), idx),
    st.tuples(st.just("collect")),
)


def play(program: list[tuple[Any, ...]], etcd: list[str] | None = None) -> None:
    loop = asyncio.new_event_loop()
    root = Path(tempfile.mkdtemp(prefix="bgc", dir="/tmp"))
    world = World(loop, root, etcd)
    try:
        for name, *args in [*program, ("collect",)]:
            getattr(world, name)(*args)
            world.check_metadata()
    finally:
        world.close()
        loop.close()
        shutil.rmtree(root, ignore_errors=True)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(OPS, min_size=20, max_size=60))
def test_gc_keeps_the_referenced_and_collects_the_rest(program: list[tuple[Any, ...]]) -> None:
    play(program)


@pytest.mark.etcd
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(OPS, min_size=20, max_size=60))
def test_gc_on_etcd_keeps_the_referenced_and_collects_the_rest(
    etcd_endpoints: list[str], program: list[tuple[Any, ...]]
) -> None:
    """The same rules on the etcd store (fewer examples: each costs more)."""
    play(program, etcd_endpoints)
