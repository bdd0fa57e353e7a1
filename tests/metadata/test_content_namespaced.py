"""Content through the metadata layer: per-namespace visibility, labels and
ingests over one shared backend."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import grpc
import pytest

from api import errdefs
from api.containerd.services.content.v1 import content_pb2
from services.content.ingest import LocalWriter
from services.content.local import LocalContentStore
from services.content.proxy import ProxyContentStore
from services.content.store import Info
from tests.conformance.leases import temporary_lease
from tests.metadata.server import MetaServer, meta_server


def blob(size: int = 1000) -> tuple[bytes, str]:
    data = os.urandom(size)
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


async def put(store: ProxyContentStore, data: bytes, ref: str = "r", **labels: str) -> str:
    w = await store.writer(ref, len(data))
    await w.write(data)
    return await w.commit(len(data), "", labels or None)


@pytest.fixture
async def stores(ms: MetaServer) -> AsyncIterator[tuple[ProxyContentStore, ProxyContentStore]]:
    async with temporary_lease(ms.channel, "a") as la, temporary_lease(ms.channel, "b") as lb:
        yield (
            ProxyContentStore(ms.channel, namespace="a", metadata=(la,)),
            ProxyContentStore(ms.channel, namespace="b", metadata=(lb,)),
        )


def backend_blobs(ms: MetaServer) -> list[str]:
    root = ms.content_backend.root / "blobs" / "sha256"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


async def test_a_blob_is_invisible_to_other_namespaces(
    ms: MetaServer, stores: tuple[ProxyContentStore, ProxyContentStore]
) -> None:
    a, b = stores
    data, dgst = blob()
    assert await put(a, data) == dgst
    assert (await a.info(dgst)).size == len(data)
    with pytest.raises(errdefs.NotFound):
        await b.info(dgst)
    with pytest.raises(errdefs.NotFound):
        await b.reader(dgst)
    with pytest.raises(errdefs.NotFound):
        await b.update(
            Info(
                dgst,
                0,
                (await a.info(dgst)).created_at,
                (await a.info(dgst)).updated_at,
                {"x": "y"},
            )
        )
    with pytest.raises(errdefs.NotFound):
        await b.delete(dgst)
    assert [i.digest async for i in b.walk()] == []
    assert [i.digest async for i in a.walk()] == [dgst]


async def test_writing_a_blob_another_namespace_has_costs_nothing(
    ms: MetaServer, stores: tuple[ProxyContentStore, ProxyContentStore]
) -> None:
    a, b = stores
    data, dgst = blob(100_000)
    await put(a, data)
    # The expected digest exists in the backend: the ingest starts complete.
    w = await b.writer("shared", len(data), dgst)
    st = await w.status()
    assert st.offset == len(data) and st.total == len(data)
    assert await w.commit(len(data), dgst) == dgst
    assert (await b.info(dgst)).size == len(data)
    async with await b.reader(dgst) as r:
        assert await r.read_at(0, len(data)) == data
    assert backend_blobs(ms) == [dgst.split(":")[1]]


async def test_rewriting_a_shared_blob_works_too(
    ms: MetaServer, stores: tuple[ProxyContentStore, ProxyContentStore]
) -> None:
    a, b = stores
    data, dgst = blob(5000)
    await put(a, data)
    # A client that writes the bytes anyway (offset 0 restarts the ingest).
    w = await b.writer("again", len(data), dgst)
    await w.truncate(0)
    await w.write(data)
    assert await w.commit(len(data), dgst) == dgst
    assert (await b.info(dgst)).size == len(data)


async def test_labels_belong_to_the_namespace(
    stores: tuple[ProxyContentStore, ProxyContentStore],
) -> None:
    a, b = stores
    data, dgst = blob()
    await put(a, data, "ra", owner="a")
    await put(b, data, "rb", owner="b")
    assert (await a.info(dgst)).labels == {"owner": "a"}
    assert (await b.info(dgst)).labels == {"owner": "b"}
    info = await a.info(dgst)
    await a.update(
        Info(dgst, 0, info.created_at, info.updated_at, {"extra": "1"}), ["labels.extra"]
    )
    assert (await a.info(dgst)).labels == {"owner": "a", "extra": "1"}
    assert (await b.info(dgst)).labels == {"owner": "b"}
    assert [i.digest async for i in b.walk(["labels.owner==b"])] == [dgst]
    assert [i.digest async for i in b.walk(["labels.owner==a"])] == []


async def test_ingests_belong_to_the_namespace(
    ms: MetaServer, stores: tuple[ProxyContentStore, ProxyContentStore]
) -> None:
    a, b = stores
    # The same ref in two namespaces is two ingests, writable at once.
    wa = await a.writer("same-ref", 10)
    wb = await b.writer("same-ref", 10)
    await wa.write(b"aaaa")
    await wb.write(b"bb")
    await wa.close()
    await wb.close()
    assert (await a.status("same-ref")).offset == 4
    assert (await b.status("same-ref")).offset == 2
    assert [s.ref for s in await a.list_statuses()] == ["same-ref"]
    await a.abort("same-ref")
    with pytest.raises(errdefs.NotFound):
        await a.status("same-ref")
    assert (await b.status("same-ref")).offset == 2
    with pytest.raises(errdefs.NotFound):
        await a.abort("same-ref")
    # The backend knows them under namespaced refs.
    refs = sorted(s.ref for s in await ms.content_backend.list_statuses())
    assert len(refs) == 1 and refs[0].startswith("b/") and refs[0].endswith("/same-ref")


async def test_deleting_in_one_namespace_keeps_the_bytes_for_the_other(
    ms: MetaServer, stores: tuple[ProxyContentStore, ProxyContentStore]
) -> None:
    a, b = stores
    data, dgst = blob()
    await put(a, data, "ra")
    await put(b, data, "rb")
    await a.delete(dgst)
    await ms.services.scheduler.schedule_and_wait()
    with pytest.raises(errdefs.NotFound):
        await a.info(dgst)
    async with await b.reader(dgst) as r:
        assert await r.read_at(0, 10) == data[:10]
    await b.delete(dgst)
    await ms.services.scheduler.schedule_and_wait()
    assert backend_blobs(ms) == []


class _DeletedBehindOurBack(LocalContentStore):
    """A content store another client of the content plugin empties right
    after each commit (the plugin's socket is open to more than the daemon)."""

    async def writer(self, ref: str, total: int = 0, expected: str = "") -> LocalWriter:
        w = await super().writer(ref, total, expected)
        commit = w.commit

        async def commit_then_lose(
            size: int = 0, expected: str = "", labels: Mapping[str, str] | None = None
        ) -> str:
            dgst = await commit(size, expected, labels)
            await self.delete(dgst)
            return dgst

        w.commit = commit_then_lose  # type: ignore[method-assign]
        return w


async def test_a_commit_is_recorded_only_when_the_backend_holds_the_blob(tmp_path: Path) -> None:
    lossy = _DeletedBehindOurBack(tmp_path / "lossy")
    async with (
        meta_server(tmp_path, content=lossy) as ms,
        temporary_lease(ms.channel, "a") as la,
    ):
        store = ProxyContentStore(ms.channel, namespace="a", metadata=(la,))
        data, dgst = blob()
        with pytest.raises(errdefs.DataLoss, match="missing from the content store"):
            await put(store, data)
        with pytest.raises(errdefs.NotFound):
            await store.info(dgst)
        assert [i async for i in store.walk()] == []


async def test_info_list_update_answer_the_namespaces_record_to_the_nanosecond(
    ms: MetaServer, stores: tuple[ProxyContentStore, ProxyContentStore]
) -> None:
    a, _ = stores
    data, dgst = blob()
    await put(a, data, **{"containerd.io/gc.root": "x", "k": "v"})
    record = await ms.services.content.record("a", dgst)
    assert record is not None
    md = (("containerd-namespace", "a"),)
    info = (await ms.stubs.content.Info(content_pb2.InfoRequest(digest=dgst), metadata=md)).info
    assert (info.digest, info.size) == (dgst, len(data))
    assert dict(info.labels) == {"containerd.io/gc.root": "x", "k": "v"}
    # containerd keeps nanoseconds: so does every answer.
    assert info.created_at.ToNanoseconds() == record.created_at
    assert info.updated_at.ToNanoseconds() == record.updated_at
    listed = [
        i
        async for resp in ms.stubs.content.List(content_pb2.ListContentRequest(), metadata=md)
        for i in resp.info
    ]
    assert [i.created_at.ToNanoseconds() for i in listed] == [record.created_at]
    update = content_pb2.UpdateRequest(info=content_pb2.Info(digest=dgst, labels={"k": "w"}))
    update.update_mask.paths.append("labels.k")
    updated = (await ms.stubs.content.Update(update, metadata=md)).info
    record = await ms.services.content.record("a", dgst)
    assert record is not None and record.labels["k"] == "w"
    assert updated.updated_at.ToNanoseconds() == record.updated_at
    assert updated.created_at.ToNanoseconds() == record.created_at
    # No record: another namespace's blob, an unknown one, a malformed digest.
    for ns, digest, code, text in (
        ("b", dgst, grpc.StatusCode.NOT_FOUND, f"content digest {dgst}"),
        ("a", "sha256:" + "0" * 64, grpc.StatusCode.NOT_FOUND, "content digest sha256:000"),
        ("a", "sha256:nope", grpc.StatusCode.INVALID_ARGUMENT, '"sha256:nope" failed validation'),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await ms.stubs.content.Info(
                content_pb2.InfoRequest(digest=digest),
                metadata=(("containerd-namespace", ns),),
            )
        assert e.value.code() == code
        assert text in (e.value.details() or "")
