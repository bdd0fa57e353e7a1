"""Snapshots through the metadata layer: namespaced keys, labels, remote layers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import pytest

from api import errdefs
from api.containerd.services.namespaces.v1 import namespace_pb2
from daemon.metadata import records
from daemon.metadata.store import SNAPSHOTS
from services.snapshotter.proxy import ProxySnapshotter
from services.snapshotter.remote import ProvidedLayers
from services.snapshotter.snapshotter import LABEL_SNAPSHOT_REF, Info, Kind, Mount, Snapshotter
from tests.metadata.server import MetaServer, meta_server
from tests.support import short_tmpdir

ROOT = {"containerd.io/gc.root": "test"}


def sn(ms: MetaServer, ns: str) -> ProxySnapshotter:
    return ProxySnapshotter(ms.channel, "native", namespace=ns)


async def test_same_keys_in_two_namespaces_never_collide(ms: MetaServer) -> None:
    a, b = sn(ms, "a"), sn(ms, "b")
    await a.prepare("k", "", ROOT)
    await b.prepare("k", "", ROOT)
    await a.commit("layer", "k", ROOT)
    await b.commit("layer", "k", ROOT)
    await a.prepare("top", "layer", ROOT)
    assert sorted([i.name async for i in a.walk()]) == ["layer", "top"]
    assert [i.name async for i in b.walk()] == ["layer"]
    with pytest.raises(errdefs.NotFound):
        await b.stat("top")
    with pytest.raises(errdefs.NotFound):
        await b.remove("top")
    with pytest.raises(errdefs.NotFound):
        await b.mounts("top")
    with pytest.raises(errdefs.NotFound):
        await b.prepare("x", "top")
    await b.remove("layer")
    assert (await a.stat("layer")).kind == Kind.COMMITTED
    with pytest.raises(errdefs.FailedPrecondition, match="child"):
        await a.remove("layer")
    # The backend holds each namespace's snapshots under its own keys.
    names = sorted([i.name async for i in ms.snapshot_backend.walk()])
    assert all(n.startswith(("a/", "b/")) for n in names)


async def test_labels_are_per_namespace_and_only_inherited_ones_go_down(ms: MetaServer) -> None:
    a, b = sn(ms, "a"), sn(ms, "b")
    labels = {**ROOT, "mine": "a", "containerd.io/snapshot/remote": "yes"}
    await a.prepare("k", "", labels)
    await b.prepare("k", "", ROOT)
    assert (await a.stat("k")).labels == labels
    assert (await b.stat("k")).labels == ROOT
    updated = await a.update(Info("k", labels={"added": "1"}), "labels.added")
    assert updated.labels == {**labels, "added": "1"}
    backend = {i.name: i async for i in ms.snapshot_backend.walk()}
    [a_key] = [n for n in backend if n.startswith("a/")]
    assert backend[a_key].labels == {"containerd.io/snapshot/remote": "yes"}
    assert [i.name async for i in a.walk("labels.mine==a")] == ["k"]
    assert [i.name async for i in b.walk("labels.mine==a")] == []
    with pytest.raises(errdefs.InvalidArgument, match='cannot update "parent"'):
        await a.update(Info("k"), "parent")


class WriteAFile:
    """A layer provider: fills the snapshot with one file named after the layer."""

    def __init__(self) -> None:
        self.provided: list[str] = []

    async def provide(
        self, target: str, parent: str, labels: Mapping[str, str], mounts: Sequence[Mount]
    ) -> bool:
        Path(mounts[0].source, target).write_text(target)
        self.provided.append(target)
        return True


@pytest.fixture
async def remote() -> AsyncIterator[tuple[MetaServer, WriteAFile]]:
    provider = WriteAFile()

    def wrap(inner: Snapshotter) -> Snapshotter:
        return ProvidedLayers(inner, provider)

    with short_tmpdir("bm") as d:
        async with meta_server(d, wrap=wrap) as server:
            yield server, provider


async def test_remote_layers_pass_through(remote: tuple[MetaServer, WriteAFile]) -> None:
    ms, provider = remote
    a, b = sn(ms, "a"), sn(ms, "b")
    for s in (a, b):
        with pytest.raises(errdefs.AlreadyExists, match="target snapshot"):
            await s.prepare("extract-1", "", {**ROOT, LABEL_SNAPSHOT_REF: "chain1", "mine": "x"})
        info = await s.stat("chain1")
        assert info.kind == Kind.COMMITTED
        assert info.labels[LABEL_SNAPSHOT_REF] == "chain1" and info.labels["mine"] == "x"
        with pytest.raises(errdefs.NotFound):
            await s.stat("extract-1")
    # Provided once, shared by both namespaces.
    assert provider.provided == ["chain1"]
    # (Without the gc.root label the collector would take these at the next
    # deletion: nothing else references them.)
    with pytest.raises(errdefs.AlreadyExists):
        await a.prepare("extract-2", "chain1", {**ROOT, LABEL_SNAPSHOT_REF: "chain2"})
    assert (await a.stat("chain2")).parent == "chain1"
    # Removing it in one namespace keeps it for the other.
    await a.remove("chain2")
    await a.remove("chain1")
    await ms.services.scheduler.schedule_and_wait()
    assert [i.name async for i in ms.snapshot_backend.walk()] == ["chain1"]
    await b.remove("chain1")
    await ms.services.scheduler.schedule_and_wait()
    assert [i.name async for i in ms.snapshot_backend.walk()] == []


async def test_empty_keys_are_refused_and_old_ones_can_go(ms: MetaServer) -> None:
    a = sn(ms, "empties")
    with pytest.raises(errdefs.InvalidArgument, match="key must not be empty"):
        await a.prepare("", "", ROOT)
    with pytest.raises(errdefs.InvalidArgument, match="key must not be empty"):
        await a.view("", "", ROOT)
    await a.prepare("k", "", ROOT)
    with pytest.raises(errdefs.InvalidArgument, match="name must not be empty"):
        await a.commit("", "k", ROOT)
    assert [i.name async for i in a.walk()] == ["k"]
    # A snapshot keyed "" from before empty keys were refused, beside other
    # parentless ones: it has no children, so it goes, and so does its namespace.
    await ms.snapshot_backend.prepare("empties/old/", "")
    old = records.Snapshot("empties", "native", "", "empties/old/", kind=int(Kind.ACTIVE))
    await ms.services.db.update(lambda tx: tx.put(SNAPSHOTS, old))
    assert sorted([i.name async for i in a.walk()]) == ["", "k"]
    await a.remove("")
    await a.remove("k")
    await ms.stubs.namespaces.Delete(
        namespace_pb2.DeleteNamespaceRequest(name="empties"), metadata=()
    )
    listed = await ms.stubs.namespaces.List(namespace_pb2.ListNamespacesRequest())
    assert "empties" not in [n.name for n in listed.namespaces]
