"""Garbage collection scenarios: what an image import leaves, what ``--sync``
deletes wait for, ingests, expiry, crash leftovers, metrics."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest
from prometheus_client import generate_latest

from api.containerd.services.images.v1 import images_pb2
from api.containerd.services.leases.v1 import leases_pb2
from api.containerd.types import descriptor_pb2
from daemon.metadata.store import INGESTS
from services.content.proxy import ProxyContentStore
from services.snapshotter.proxy import ProxySnapshotter
from tests.metadata.server import MetaServer, md
from tests.support import need_binary

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def blob(data: bytes | None = None) -> tuple[bytes, str]:
    data = data if data is not None else os.urandom(200)
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


async def put(store: ProxyContentStore, data: bytes, labels: dict[str, str] | None = None) -> str:
    w = await store.writer(f"ref-{os.urandom(4).hex()}", len(data))
    await w.write(data)
    return await w.commit(len(data), "", labels)


def backend_digests(ms: MetaServer) -> set[str]:
    root = ms.content_backend.root / "blobs" / "sha256"
    return {f"sha256:{p.name}" for p in root.iterdir()} if root.exists() else set()


async def backend_snapshots(ms: MetaServer) -> set[str]:
    return {i.name async for i in ms.snapshot_backend.walk()}


async def import_image(ms: MetaServer, ns: str, name: str) -> tuple[list[str], str]:
    """What ``ctr images import`` leaves: blobs linked by gc.ref labels, the
    unpacked snapshot referenced from the config, an image; all under a lease
    that is then deleted."""
    lease = f"import-{os.urandom(3).hex()}"
    await ms.stubs.leases.Create(leases_pb2.CreateRequest(id=lease), metadata=md(ns))
    store = ProxyContentStore(ms.channel, namespace=ns, metadata=(("containerd-lease", lease),))
    sn = ProxySnapshotter(ms.channel, "native", namespace=ns)
    # Snapshot chain: the unpacker works under the same lease.
    sn_leased = ProxySnapshotter(ms.channel, "native", namespace=ns)
    sn_leased._metadata = (*md(ns), ("containerd-lease", lease))  # type: ignore[assignment]
    await sn_leased.prepare("extract-1", "")
    await sn_leased.commit("chain-1", "extract-1")
    await sn_leased.prepare("extract-2", "chain-1")
    await sn_leased.commit("chain-2", "extract-2")
    layer1, l1 = blob()
    layer2, l2 = blob()
    config, cfg = blob()
    await put(store, layer1)
    await put(store, layer2)
    await put(store, config, {"containerd.io/gc.ref.snapshot.native": "chain-2"})
    manifest, man = blob()
    await put(
        store,
        manifest,
        {
            "containerd.io/gc.ref.content.config": cfg,
            "containerd.io/gc.ref.content.l.0": l1,
            "containerd.io/gc.ref.content.l.1": l2,
        },
    )
    await ms.stubs.images.Create(
        images_pb2.CreateImageRequest(
            image=images_pb2.Image(
                name=name,
                target=descriptor_pb2.Descriptor(
                    media_type=MANIFEST, digest=man, size=len(manifest)
                ),
            )
        ),
        metadata=md(ns),
    )
    await ms.stubs.leases.Delete(leases_pb2.DeleteRequest(id=lease, sync=True), metadata=md(ns))
    assert {i.name async for i in sn.walk()} == {"chain-1", "chain-2"}
    return [man, cfg, l1, l2], name


async def test_an_image_keeps_its_graph_and_sync_delete_frees_it(ms: MetaServer) -> None:
    digests, name = await import_image(ms, "n", "docker.io/x:1")
    store = ProxyContentStore(ms.channel, namespace="n")
    assert {i.digest async for i in store.walk()} == set(digests)
    assert backend_digests(ms) == set(digests)
    assert len(await backend_snapshots(ms)) == 2

    await ms.stubs.images.Delete(
        images_pb2.DeleteImageRequest(name=name, sync=True), metadata=md("n")
    )
    assert [i async for i in store.walk()] == []
    assert [i async for i in ProxySnapshotter(ms.channel, "native", namespace="n").walk()] == []
    assert backend_digests(ms) == set()
    assert await backend_snapshots(ms) == set()


async def test_an_image_in_another_namespace_keeps_the_shared_bytes(ms: MetaServer) -> None:
    d1, _ = await import_image(ms, "one", "x:1")
    await import_image(ms, "two", "y:1")
    await ms.stubs.images.Delete(
        images_pb2.DeleteImageRequest(name="x:1", sync=True), metadata=md("one")
    )
    # Namespace "two" wrote other random blobs; its own survive, "one"'s are gone.
    assert backend_digests(ms).isdisjoint(d1)
    assert len(backend_digests(ms)) == 4
    assert len(await backend_snapshots(ms)) == 2


async def test_unleased_ingests_live_a_day_and_leased_ones_with_their_lease(ms: MetaServer) -> None:
    store = ProxyContentStore(ms.channel, namespace="n")
    w = await store.writer("unleased", 10)
    await w.write(b"12345")
    await w.close()
    await ms.stubs.leases.Create(leases_pb2.CreateRequest(id="l"), metadata=md("n"))
    leased = ProxyContentStore(ms.channel, namespace="n", metadata=(("containerd-lease", "l"),))
    w = await leased.writer("leased", 10)
    await w.write(b"123")
    await w.close()
    await ms.services.scheduler.schedule_and_wait()
    assert sorted(s.ref for s in await store.list_statuses()) == ["leased", "unleased"]

    # Delete the lease: its ingest goes, in the metadata and in the backend.
    await ms.stubs.leases.Delete(leases_pb2.DeleteRequest(id="l", sync=True), metadata=md("n"))
    assert [s.ref for s in await store.list_statuses()] == ["unleased"]
    assert len(await ms.content_backend.list_statuses()) == 1

    # Age the unleased one past its expiry.
    def expire(tx):  # type: ignore[no-untyped-def]
        import dataclasses

        rec = tx.get(INGESTS, "n", "unleased")
        tx.put(INGESTS, dataclasses.replace(rec, expire_at=1))

    await ms.services.db.update(expire)
    await ms.services.scheduler.schedule_and_wait()
    assert await store.list_statuses() == []
    assert await ms.content_backend.list_statuses() == []


async def test_expired_leases_are_collected(ms: MetaServer) -> None:
    s = ms.stubs.leases
    for lid, when in (("old", "2001-01-01T00:00:00Z"), ("new", "2999-01-01T00:00:00Z")):
        await s.Create(
            leases_pb2.CreateRequest(id=lid, labels={"containerd.io/gc.expire": when}),
            metadata=md("n"),
        )
    store = ProxyContentStore(ms.channel, namespace="n", metadata=(("containerd-lease", "old"),))
    data, dgst = blob()
    await put(store, data)
    await ms.services.scheduler.schedule_and_wait()
    assert [x.id for x in (await s.List(leases_pb2.ListRequest(), metadata=md("n"))).leases] == [
        "new"
    ]
    assert dgst not in backend_digests(ms)


async def test_first_collection_removes_what_a_crash_left_in_the_backends(ms: MetaServer) -> None:
    # Bytes the metadata never recorded: a blob committed straight into the
    # backend, an ingest and a snapshot nobody knows.
    data, dgst = blob()
    w = await ms.content_backend.writer("orphan-commit", len(data))
    await w.write(data)
    await w.commit(len(data), dgst)
    w = await ms.content_backend.writer("orphan-ingest", 10)
    await w.write(b"1")
    await w.close()
    await ms.snapshot_backend.prepare("n/99/orphan")
    await ms.services.scheduler.schedule_and_wait()
    assert backend_digests(ms) == set()
    assert await ms.content_backend.list_statuses() == []
    assert await backend_snapshots(ms) == set()


async def test_gc_and_object_metrics(ms: MetaServer) -> None:
    await import_image(ms, "n", "x:1")
    await ms.stubs.images.Delete(
        images_pb2.DeleteImageRequest(name="x:1", sync=True), metadata=md("n")
    )
    await ms.stubs.leases.Create(leases_pb2.CreateRequest(id="keep"), metadata=md("m"))
    page = (await asyncio.to_thread(generate_latest, ms.server.registry)).decode()
    assert 'berthd_metadata_objects{kind="leases",namespace="m"} 1.0' in page
    assert 'berthd_metadata_objects{kind="images",namespace="n"} 0.0' in page
    assert 'berthd_gc_runs_total{result="ok"}' in page
    removed = [
        line for line in page.splitlines() if line.startswith("berthd_gc_removed_objects_total")
    ]
    assert any('kind="content"' in line and not line.endswith(" 0.0") for line in removed)
    assert any('kind="backend"' in line and not line.endswith(" 0.0") for line in removed)
    assert "berthd_gc_duration_seconds_count" in page


@pytest.mark.promtool
async def test_promtool_accepts_the_families(ms: MetaServer) -> None:
    need_binary("promtool")
    await import_image(ms, "n", "x:1")
    await ms.stubs.images.Delete(
        images_pb2.DeleteImageRequest(name="x:1", sync=True), metadata=md("n")
    )
    page = await asyncio.to_thread(generate_latest, ms.server.registry)
    proc = await asyncio.create_subprocess_exec(
        "promtool", "check", "metrics", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate(page)
    assert proc.returncode == 0, out.decode()
