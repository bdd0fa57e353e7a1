"""LocalContentStore as a plain library: layout, durability rules, locking, resume."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from api import errdefs
from services.content.ingest import format_time, ingest_dir, parse_time
from services.content.local import LocalContentStore
from services.content.store import Info
from tests.content.tinyfs import tiny_tmpfs
from tests.support import short_tmpdir

MiB = 1 << 20


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> LocalContentStore:
    return LocalContentStore(tmp_path / "content")


async def put(store: LocalContentStore, data: bytes, ref: str = "ref", **labels: str) -> str:
    w = await store.writer(ref, total=len(data))
    await w.write(data)
    return await w.commit(len(data), sha(data), labels or None)


async def collect(it: AsyncIterator[Info]) -> list[Info]:
    return [i async for i in it]


async def test_layout_matches_containerd(store: LocalContentStore) -> None:
    data = os.urandom(1000)
    w = await store.writer("my-ref", total=len(data))
    await w.write(data[:10])
    ingest = store.root / "ingest" / hashlib.sha256(b"my-ref").hexdigest()
    assert ingest == ingest_dir(store.root, "my-ref")
    assert sorted(p.name for p in ingest.iterdir()) == [
        "data",
        "ref",
        "startedat",
        "total",
        "updatedat",
    ]
    assert (ingest / "ref").read_text() == "my-ref"
    assert (ingest / "total").read_text() == "1000"
    started = parse_time((ingest / "startedat").read_text())
    assert abs((datetime.now(UTC) - started).total_seconds()) < 60

    await w.write(data[10:])
    dgst = await w.commit(len(data), sha(data))
    blob = store.root / "blobs" / "sha256" / dgst.split(":")[1]
    assert blob.read_bytes() == data
    assert stat.S_IMODE(blob.stat().st_mode) & 0o222 == 0  # read-only
    assert not ingest.exists()


def test_timestamps_read_go_text() -> None:
    # as Go's time.MarshalText writes them, with and without a zone offset
    assert parse_time("2024-05-01T10:11:12.123456789+02:00") == datetime(
        2024, 5, 1, 8, 11, 12, 123456, tzinfo=UTC
    )
    assert parse_time("2024-05-01T10:11:12Z") == datetime(2024, 5, 1, 10, 11, 12, tzinfo=UTC)
    assert format_time(1_700_000_000_120_000_000) == "2023-11-14T22:13:20.12Z"
    assert format_time(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    assert parse_time(format_time(1_700_000_000_123_456_789)) == datetime(
        2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC
    )


async def test_resume_across_store_instances(tmp_path: Path) -> None:
    """A restart keeps the ingest; a new writer rehashes and continues."""
    data = os.urandom(3 * MiB + 5)
    first = LocalContentStore(tmp_path)
    w = await first.writer("resume", total=len(data))
    await w.write(data[:MiB])
    started = (await w.status()).started_at
    await w.close()

    second = LocalContentStore(tmp_path)
    st = await second.status("resume")
    assert (st.ref, st.offset, st.total) == ("resume", MiB, len(data))
    w = await second.writer("resume", total=len(data))
    assert (await w.status()).offset == MiB
    assert (await w.status()).started_at == st.started_at
    assert abs((st.started_at - started).total_seconds()) < 1e-3
    assert w.digest() == sha(data[:MiB])
    await w.write(data[MiB:])
    assert await w.commit(len(data), sha(data)) == sha(data)


async def test_resume_with_other_total_starts_over(store: LocalContentStore) -> None:
    w = await store.writer("r", total=100)
    await w.write(b"a" * 50)
    await w.close()
    w = await store.writer("r", total=200)
    st = await w.status()
    assert (st.offset, st.total) == (0, 200)
    await w.close()
    assert (await store.status("r")).offset == 0


async def test_unreadable_ingest_starts_over(store: LocalContentStore) -> None:
    w = await store.writer("r")
    await w.write(b"abc")
    await w.close()
    (ingest_dir(store.root, "r") / "ref").unlink()  # e.g. a crash mid-creation
    w = await store.writer("r")
    assert (await w.status()).offset == 0
    await w.write(b"xyz")
    assert await w.commit(3, sha(b"xyz")) == sha(b"xyz")


async def test_torn_timestamp_file_is_skipped(store: LocalContentStore) -> None:
    w = await store.writer("torn")
    await w.write(b"abc")
    await w.close()
    (ingest_dir(store.root, "torn") / "startedat").write_text("")
    assert await store.list_statuses() == []
    with pytest.raises(errdefs.NotFound):
        await store.status("torn")
    w = await store.writer("torn")
    assert (await w.status()).offset == 0
    await w.close()
    assert [s.ref for s in await store.list_statuses()] == ["torn"]


async def test_one_writer_per_ref(store: LocalContentStore) -> None:
    w = await store.writer("busy")
    with pytest.raises(errdefs.Unavailable, match=r"ref busy locked for .* \(since "):
        await store.writer("busy")
    other = await store.writer("other")  # other refs are free
    await other.close()
    await w.close()
    await w.close()  # idempotent
    w2 = await store.writer("busy")
    await w2.close()


async def test_lock_waits_briefly_for_release(store: LocalContentStore) -> None:
    w = await store.writer("handoff")

    async def release_soon() -> None:
        await asyncio.sleep(0.01)
        await w.close()

    task = asyncio.create_task(release_soon())
    w2 = await store.writer("handoff")  # containerd retries before giving up
    await task
    await w2.close()


async def test_commit_size_and_digest_mismatch_keep_ingest(store: LocalContentStore) -> None:
    data = b"hello world"
    w = await store.writer("m")
    await w.write(data)
    with pytest.raises(errdefs.FailedPrecondition, match="unexpected commit size 11, expected 12"):
        await w.commit(12)
    with pytest.raises(errdefs.FailedPrecondition, match="closed writer"):
        await w.commit()
    w = await store.writer("m")
    with pytest.raises(errdefs.FailedPrecondition, match="unexpected commit digest"):
        await w.commit(0, sha(b"other"))
    with pytest.raises(errdefs.NotFound):
        await store.info(sha(data))
    assert (await store.status("m")).offset == len(data)
    # the ref is free again after a failed commit
    w = await store.writer("m")
    assert await w.commit(len(data), sha(data)) == sha(data)


async def test_commit_existing_blob_drops_ingest(store: LocalContentStore) -> None:
    await put(store, b"same", ref="one")
    w = await store.writer("two")
    await w.write(b"same")
    with pytest.raises(errdefs.AlreadyExists, match=f"content {sha(b'same')}"):
        await w.commit()
    with pytest.raises(errdefs.NotFound):
        await store.status("two")
    with pytest.raises(errdefs.AlreadyExists):
        await store.writer("three", expected=sha(b"same"))
    assert "three" not in [s.ref for s in await store.list_statuses()]


async def test_abort_during_write(store: LocalContentStore) -> None:
    w = await store.writer("gone")
    await w.write(b"abc")
    await store.abort("gone")
    with pytest.raises(errdefs.NotFound, match="aborted"):
        await w.commit()
    with pytest.raises(errdefs.NotFound):
        await store.abort("gone")


async def test_truncate(store: LocalContentStore) -> None:
    w = await store.writer("t")
    await w.write(b"garbage")
    await w.truncate(0)
    await w.write(b"good")
    with pytest.raises(errdefs.InvalidArgument):
        await w.truncate(2)
    assert await w.commit(4, sha(b"good")) == sha(b"good")


async def test_cancelled_write_leaves_consistent_ingest(store: LocalContentStore) -> None:
    """A caller that goes away mid-write neither corrupts the ingest nor keeps the ref."""
    data = os.urandom(64 * MiB)
    w = await store.writer("cancel")
    task = asyncio.create_task(w.write(data))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await w.close()  # waits for the thread still writing
    w = await store.writer("cancel")
    st = await w.status()
    assert st.offset in (0, len(data))
    assert w.digest() == sha(data[: st.offset])
    await w.close()


async def test_event_loop_runs_during_large_write(store: LocalContentStore) -> None:
    data = os.urandom(96 * MiB)
    w = await store.writer("big")
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    t = asyncio.create_task(ticker())
    await w.write(data)  # writing and hashing run in a worker thread
    await w.commit(len(data), sha(data))
    done = True
    await t
    assert ticks > 10


async def test_info_update_and_labels_persist(tmp_path: Path) -> None:
    store = LocalContentStore(tmp_path)
    dgst = await put(store, b"labelled", a="1", b="2")
    info = await store.info(dgst)
    assert (info.size, dict(info.labels)) == (8, {"a": "1", "b": "2"})
    assert info.created_at <= info.updated_at

    new = Info(dgst, 0, info.created_at, info.updated_at, {"b": "", "c": "3"})
    got = await store.update(new, ["labels.b", "labels.c"])
    assert dict(got.labels) == {"a": "1", "c": "3"}
    assert got.created_at == info.created_at
    assert got.updated_at >= info.updated_at
    # updated time survives (containerd keeps it in atime; reads must not move it)
    async with await store.reader(dgst) as r:
        assert await r.read_at(0, 100) == b"labelled"
    again = await LocalContentStore(tmp_path).info(dgst)
    assert dict(again.labels) == {"a": "1", "c": "3"}
    assert abs((again.updated_at - got.updated_at).total_seconds()) < 1e-3

    assert dict((await store.update(Info(dgst, 0, info.created_at, info.created_at))).labels) == {}
    assert not (tmp_path / "labels" / "sha256" / dgst.split(":")[1]).exists()
    with pytest.raises(errdefs.InvalidArgument, match="cannot update 'size'"):
        await store.update(new, ["size"])
    with pytest.raises(errdefs.InvalidArgument, match="maximum size"):
        await store.update(Info(dgst, 0, info.created_at, info.created_at, {"k": "v" * 5000}))
    with pytest.raises(errdefs.NotFound):
        await store.update(Info(sha(b"nope"), 0, info.created_at, info.created_at))


async def test_labels_file_is_json(store: LocalContentStore) -> None:
    dgst = await put(store, b"x", k="v")
    path = store.root / "labels" / "sha256" / dgst.split(":")[1]
    assert json.loads(path.read_text()) == {"k": "v"}
    await store.delete(dgst)
    assert not path.exists()


async def test_walk_filters_and_foreign_entries(store: LocalContentStore) -> None:
    a = await put(store, b"a", ref="a", kind="x")
    b = await put(store, b"b", ref="b", kind="y")
    (store.root / "blobs" / "md5").mkdir()  # unknown algorithms are skipped
    (store.root / "blobs" / "md5" / "abc").write_text("junk")
    assert sorted(i.digest for i in await collect(store.walk())) == sorted([a, b])
    assert [i.digest for i in await collect(store.walk(["labels.kind==y"]))] == [b]
    assert [i.digest for i in await collect(store.walk([f"digest=={a}"]))] == [a]
    with pytest.raises(errdefs.InvalidArgument):
        await collect(store.walk(["labels.kind=="]))


async def test_reader(store: LocalContentStore) -> None:
    data = os.urandom(2 * MiB + 10)
    dgst = await put(store, data)
    async with await store.reader(dgst) as r:
        assert r.size == len(data)
        assert await r.read_at(len(data) - 4, 100) == data[-4:]
        assert await r.read_at(len(data), 10) == b""
        with pytest.raises(errdefs.OutOfRange):
            await r.read_at(len(data) + 1, 1)
        assert [len(c) async for c in r.chunks()] == [MiB, MiB, 10]
        assert b"".join([c async for c in r.chunks(5, MiB)]) == data[5 : MiB + 5]
    # a reader closed while its read-ahead is still running waits for it
    async with await store.reader(dgst) as r:
        async for _ in r.chunks():
            break
    with pytest.raises(errdefs.NotFound):
        await store.reader(sha(b"missing"))
    with pytest.raises(errdefs.InvalidArgument):
        await store.reader("sha256:short")


async def test_statuses_and_abort(store: LocalContentStore) -> None:
    for ref in ("s-1", "s-2", "t-1"):
        w = await store.writer(ref, total=10)
        await w.write(b"12345")
        await w.close()
    assert sorted(s.ref for s in await store.list_statuses()) == ["s-1", "s-2", "t-1"]
    assert sorted(s.ref for s in await store.list_statuses(["ref~=^s-"])) == ["s-1", "s-2"]
    st = await store.status("t-1")
    assert (st.offset, st.total) == (5, 10)
    await store.abort("t-1")
    with pytest.raises(errdefs.NotFound):
        await store.status("t-1")
    (store.root / "ingest" / "half-made").mkdir()  # no data or ref yet: not listed
    assert sorted(s.ref for s in await store.list_statuses()) == ["s-1", "s-2"]


async def test_input_validation(store: LocalContentStore) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="ref must not be empty"):
        await store.writer("")
    with pytest.raises(errdefs.InvalidArgument):
        await store.writer("r", expected="sha256:xyz")
    for bad in ("", "sha256:", "foo:bar", "sha256:" + "A" * 64, "sha512:" + "0" * 64):
        with pytest.raises(errdefs.InvalidArgument):
            await store.info(bad)
    w = await store.writer("labels")
    await w.write(b"q")
    with pytest.raises(errdefs.InvalidArgument, match="maximum size"):
        await w.commit(labels={"k": "v" * 4096})


async def test_usage(store: LocalContentStore) -> None:
    await put(store, b"12345", ref="a")
    await put(store, b"123", ref="b")
    w = await store.writer("pending")
    await w.close()
    assert store.usage() == (2, 8, 1)


@pytest.fixture
def small_fs() -> Iterator[Path]:
    """A 1 MiB tmpfs, to run out of space for real."""
    with short_tmpdir("bcf") as d, tiny_tmpfs(d / "fs", "1m") as fs:
        yield fs.where


@pytest.mark.root
async def test_disk_full_keeps_data_and_hash_in_step(small_fs: Path) -> None:
    store = LocalContentStore(small_fs)
    w = await store.writer("full")
    await w.write(b"a" * 1000)
    more = os.urandom(2 * MiB)
    with pytest.raises(errdefs.ResourceExhausted, match="no space left on device"):
        await w.write(more)
    # What reached the disk stays (as containerd keeps it), and the hash and
    # offset cover exactly that, so it commits, or resumes, as written.
    offset = (await w.status()).offset
    assert 1000 < offset < MiB
    data = ingest_dir(store.root, "full") / "data"
    assert data.stat().st_size == offset
    kept = b"a" * 1000 + more[: offset - 1000]
    assert data.read_bytes() == kept
    assert w.digest() == sha(kept)
    assert await w.commit(offset, sha(kept)) == sha(kept)
