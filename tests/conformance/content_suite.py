"""The content conformance suite: black-box over a gRPC channel.

A test module runs it by defining a ``content_target`` fixture that yields a
``ContentTarget`` and importing the tests::

    from tests.conformance.content_suite import *  # noqa: F403

    @pytest.fixture
    async def content_target() -> AsyncIterator[ContentTarget]:
        ...

The same tests run against our plugin over its socket, against real
containerd's own content service (the reference: the suite passing there is
what proves the suite right) and, later, the daemon's federated service.

The tests never assume an empty store: every blob holds random bytes and every
ref is unique, so a target may be shared by the tests of a module.  Each test
gets a fresh namespace, which real containerd needs and our plugin ignores.
The tests about blobs of another namespace run on namespaced targets only
(containerd, the daemon), under the target's content sharing policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from api import errdefs, errgrpc, namespaces
from api.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from services.content.convert import GO_ZERO_SECONDS
from services.content.proxy import ProxyContentStore
from services.content.store import Info
from tests.conformance.leases import temporary_lease

MiB = 1 << 20
EMPTY_DIGEST = "sha256:" + hashlib.sha256(b"").hexdigest()

__all__ = [
    "ContentTarget",
    "test_abort",
    "test_chunked_write",
    "test_commit_carries_data",
    "test_commit_existing_blob",
    "test_commit_wrong_digest",
    "test_commit_wrong_size",
    "test_concurrent_writers_on_distinct_refs",
    "test_delete",
    "test_empty_blob",
    "test_expected_digest_already_committed",
    "test_expected_digest_existing_with_other_bytes",
    "test_expected_digest_of_another_namespace_needs_matching_bytes",
    "test_expected_digest_of_another_namespace_without_bytes",
    "test_first_message_needs_ref",
    "test_info_of_unknown_and_malformed",
    "test_label_size_limit",
    "test_labels_on_commit_and_update",
    "test_list_batches",
    "test_list_filters",
    "test_list_statuses_filters",
    "test_read_offsets",
    "test_read_past_end",
    "test_resume_after_stream_ends",
    "test_second_writer_on_ref_is_refused",
    "test_single_write",
    "test_status",
    "test_status_times_lie_within_the_writes",
    "test_strict_rejects_negative_offsets",
    "test_update_field_paths",
    "test_write_at_wrong_offset",
    "test_write_at_zero_restarts",
    "test_writer_client_round_trip",
]


# The tests whose outcome depends on the content sharing policy.
CROSS_NAMESPACE = (
    "test_expected_digest_of_another_namespace_needs_matching_bytes",
    "test_expected_digest_of_another_namespace_without_bytes",
)


@dataclass
class ContentTarget:
    """What the suite runs against.

    ``metadata`` goes on every call beside the namespace: a target with
    garbage collection (containerd) needs a ``containerd-lease`` header there,
    or it may collect the suite's blobs between two calls.
    ``strict``: the target refuses inputs containerd lets through (negative
    offsets, a malformed expected digest); False for containerd itself.
    ``namespaced``: blobs of one namespace are invisible in another (False
    for our plugin, which has no namespaces); such a target serves leases.
    ``shared``: its content sharing policy (containerd's metadata plugin
    option): "shared" (True) lets a namespace take a blob another namespace
    holds by naming its digest, "isolated" makes it send the bytes.
    """

    channel: grpc.aio.Channel
    namespace: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    strict: bool = True
    namespaced: bool = True
    shared: bool = True

    def stub(self) -> content_pb2_grpc.ContentAsyncStub:
        return content_pb2_grpc.ContentStub(self.channel)

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        ns = namespaces.outgoing(self.namespace) if self.namespace else ()
        return (*ns, *self.metadata)

    def store(self) -> ProxyContentStore:
        return ProxyContentStore(self.channel, namespace=self.namespace, metadata=self.metadata)


@contextlib.asynccontextmanager
async def other_namespace(target: ContentTarget) -> AsyncIterator[ContentTarget]:
    """The same target in a fresh namespace, under a lease of its own."""
    ns = new_namespace()
    async with temporary_lease(target.channel, ns) as lease:
        yield dataclasses.replace(target, namespace=ns, metadata=(lease,))


def new_namespace() -> str:
    return f"conf-{uuid.uuid4().hex[:12]}"


def blob(size: int) -> tuple[bytes, str]:
    data = os.urandom(size)
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


def new_ref(tag: str = "") -> str:
    return f"conformance-{tag}-{uuid.uuid4().hex}"


@contextlib.contextmanager
def raises(cls: type[errdefs.ErrdefsError], match: str | None = None) -> Iterator[Any]:
    with pytest.raises(cls, match=match) as info, errgrpc.translate():
        yield info


class Stream:
    """One raw Write stream: ``send`` a request, get its one answer."""

    def __init__(self, target: ContentTarget) -> None:
        self.call = target.stub().Write(metadata=target.md)

    async def send(self, **fields: Any) -> content_pb2.WriteContentResponse:
        """The answer to one request; the stream's status as a typed error."""
        with errgrpc.translate():
            # InvalidStateError: the server already ended the stream; its
            # status is read below.
            with contextlib.suppress(asyncio.InvalidStateError):
                await self.call.write(content_pb2.WriteContentRequest(**fields))
            resp = await self.call.read()
            if resp is grpc.aio.EOF:
                code, details = await self.call.code(), await self.call.details()
                raise errgrpc.from_status(code, details or "")
        assert isinstance(resp, content_pb2.WriteContentResponse)
        return resp

    async def finish(self) -> list[content_pb2.WriteContentResponse]:
        """Half-close and collect what the server still sends."""
        with contextlib.suppress(asyncio.InvalidStateError):
            await self.call.done_writing()
        rest = []
        while (resp := await self.call.read()) is not grpc.aio.EOF:
            assert isinstance(resp, content_pb2.WriteContentResponse)
            rest.append(resp)
        return rest

    def cancel(self) -> None:
        self.call.cancel()


async def commit_blob(
    target: ContentTarget,
    data: bytes,
    *,
    ref: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> str:
    """Write and commit ``data`` in one stream; returns its digest."""
    dgst = "sha256:" + hashlib.sha256(data).hexdigest()
    s = Stream(target)
    with errgrpc.translate():
        await s.send(action=content_pb2.STAT, ref=ref or new_ref("blob"), total=len(data))
        offset = 0
        for i in range(0, len(data), MiB):
            chunk = data[i : i + MiB]
            await s.send(action=content_pb2.WRITE, offset=offset, data=chunk)
            offset += len(chunk)
        resp = await s.send(
            action=content_pb2.COMMIT,
            offset=offset,
            total=len(data),
            expected=dgst,
            labels=dict(labels or {}),
        )
        await s.finish()
    assert resp.digest == dgst
    return dgst


async def read_all(target: ContentTarget, dgst: str, offset: int = 0, size: int = 0) -> bytes:
    call = target.stub().Read(
        content_pb2.ReadContentRequest(digest=dgst, offset=offset, size=size), metadata=target.md
    )
    parts = []
    with errgrpc.translate():
        async for resp in call:
            parts.append(resp.data)
    return b"".join(parts)


async def info(target: ContentTarget, dgst: str) -> content_pb2.Info:
    with errgrpc.translate():
        resp = await target.stub().Info(content_pb2.InfoRequest(digest=dgst), metadata=target.md)
    return resp.info


async def status(target: ContentTarget, ref: str) -> content_pb2.Status:
    with errgrpc.translate():
        resp = await target.stub().Status(content_pb2.StatusRequest(ref=ref), metadata=target.md)
    return resp.status


async def list_digests(target: ContentTarget, *filters: str) -> list[list[str]]:
    """Digests per List message, to observe the batching."""
    call = target.stub().List(content_pb2.ListContentRequest(filters=filters), metadata=target.md)
    batches = []
    with errgrpc.translate():
        async for resp in call:
            batches.append([i.digest for i in resp.info])
    return batches


# -- writes ---------------------------------------------------------------------


async def test_single_write(content_target: ContentTarget) -> None:
    t = content_target
    data, dgst = blob(1000)
    ref = new_ref("single")
    s = Stream(t)
    first = await s.send(action=content_pb2.STAT, ref=ref, total=len(data))
    assert first.action == content_pb2.STAT
    assert first.offset == 0
    assert first.total == len(data)
    assert first.digest == EMPTY_DIGEST
    assert first.started_at.seconds > 0

    wrote = await s.send(action=content_pb2.WRITE, offset=0, data=data)
    assert wrote.action == content_pb2.WRITE
    assert wrote.offset == len(data)
    assert wrote.digest == dgst
    # Fields set by STAT stay in later answers (one response message reused).
    assert wrote.total == len(data)
    assert wrote.started_at == first.started_at

    done = await s.send(action=content_pb2.COMMIT, offset=len(data), total=len(data), expected=dgst)
    assert done.action == content_pb2.COMMIT
    assert done.offset == len(data)
    assert done.digest == dgst
    # Ending cleanly, the server sends its last answer once more.
    assert await s.finish() == [done]

    got = await info(t, dgst)
    assert got.digest == dgst
    assert got.size == len(data)
    assert got.created_at.seconds > 0
    assert await read_all(t, dgst) == data
    with raises(errdefs.NotFound):
        await status(t, ref)


async def test_chunked_write(content_target: ContentTarget) -> None:
    t = content_target
    data, dgst = blob(3 * MiB + 12345)
    s = Stream(t)
    await s.send(action=content_pb2.STAT, ref=new_ref("chunked"))
    offset = 0
    for size in (1, 4095, MiB, 17, 2 * MiB, 3 * MiB):
        chunk = data[offset : offset + size]
        if not chunk:
            break
        resp = await s.send(action=content_pb2.WRITE, offset=offset, data=chunk)
        offset += len(chunk)
        assert resp.offset == offset
    assert offset == len(data)
    done = await s.send(action=content_pb2.COMMIT, offset=offset, expected=dgst)
    assert done.digest == dgst
    await s.finish()
    assert (await info(t, dgst)).size == len(data)
    assert await read_all(t, dgst) == data


async def test_commit_carries_data(content_target: ContentTarget) -> None:
    t = content_target
    data, dgst = blob(5000)
    s = Stream(t)
    await s.send(action=content_pb2.STAT, ref=new_ref("commitdata"))
    await s.send(action=content_pb2.WRITE, offset=0, data=data[:100])
    done = await s.send(
        action=content_pb2.COMMIT, offset=100, data=data[100:], total=len(data), expected=dgst
    )
    assert done.offset == len(data)
    assert done.digest == dgst
    await s.finish()
    assert await read_all(t, dgst) == data


async def test_empty_blob(content_target: ContentTarget) -> None:
    t = content_target
    s = Stream(t)
    await s.send(action=content_pb2.STAT, ref=new_ref("empty"))
    try:
        done = await s.send(action=content_pb2.COMMIT, expected=EMPTY_DIGEST)
        assert done.digest == EMPTY_DIGEST
        await s.finish()
    except errdefs.AlreadyExists:
        pass  # a store shared across namespaces may hold it already
    assert (await info(t, EMPTY_DIGEST)).size == 0
    assert await read_all(t, EMPTY_DIGEST) == b""


async def test_resume_after_stream_ends(content_target: ContentTarget) -> None:
    t = content_target
    data, dgst = blob(2 * MiB + 7)
    ref = new_ref("resume")
    half = MiB + 3
    s = Stream(t)
    await s.send(action=content_pb2.STAT, ref=ref, total=len(data))
    await s.send(action=content_pb2.WRITE, offset=0, data=data[:half])
    await s.finish()

    st = await status(t, ref)
    assert st.ref == ref
    assert st.offset == half
    assert st.total == len(data)
    assert st.started_at.seconds > 0
    assert (st.updated_at.seconds, st.updated_at.nanos) >= (st.started_at.seconds, 0)

    s2 = Stream(t)
    again = await s2.send(action=content_pb2.STAT, ref=ref, total=len(data))
    assert again.offset == half
    assert again.digest == "sha256:" + hashlib.sha256(data[:half]).hexdigest()
    await s2.send(action=content_pb2.WRITE, offset=half, data=data[half:])
    done = await s2.send(action=content_pb2.COMMIT, offset=len(data), expected=dgst)
    assert done.digest == dgst
    await s2.finish()
    assert await read_all(t, dgst) == data


async def test_write_at_zero_restarts(content_target: ContentTarget) -> None:
    t = content_target
    data, dgst = blob(4000)
    ref = new_ref("restart")
    s = Stream(t)
    await s.send(action=content_pb2.STAT, ref=ref)
    await s.send(action=content_pb2.WRITE, offset=0, data=os.urandom(1000))
    # offset 0 on a non-empty ingest starts it over
    resp = await s.send(action=content_pb2.WRITE, offset=0, data=data)
    assert resp.offset == len(data)
    assert resp.digest == dgst
    done = await s.send(action=content_pb2.COMMIT, offset=len(data), expected=dgst)
    assert done.digest == dgst
    await s.finish()


async def test_write_at_wrong_offset(content_target: ContentTarget) -> None:
    t = content_target
    ref = new_ref("offset")
    s = Stream(t)
    await s.send(action=content_pb2.STAT, ref=ref)
    await s.send(action=content_pb2.WRITE, offset=0, data=b"x" * 10)
    with raises(errdefs.OutOfRange, match="must occur at current offset 10"):
        await s.send(action=content_pb2.WRITE, offset=20, data=b"y")
    # the bytes written so far are kept for a resume
    assert (await status(t, ref)).offset == 10
    await t.store().abort(ref)


async def test_second_writer_on_ref_is_refused(content_target: ContentTarget) -> None:
    t = content_target
    ref = new_ref("locked")
    first = Stream(t)
    await first.send(action=content_pb2.STAT, ref=ref)
    second = Stream(t)
    with raises(errdefs.Unavailable, match="locked"):
        await second.send(action=content_pb2.STAT, ref=ref)
    # the first writer is unaffected and, once it is gone, the ref is free again
    await first.send(action=content_pb2.WRITE, offset=0, data=b"abc")
    await first.finish()
    third = Stream(t)
    resp = await third.send(action=content_pb2.STAT, ref=ref)
    assert resp.offset == 3
    await third.finish()
    await t.store().abort(ref)


async def test_concurrent_writers_on_distinct_refs(content_target: ContentTarget) -> None:
    t = content_target
    blobs = [blob(MiB // 2 + i) for i in range(8)]
    got = await asyncio.gather(*(commit_blob(t, data) for data, _ in blobs))
    assert got == [d for _, d in blobs]
    for data, dgst in blobs:
        assert await read_all(t, dgst) == data


async def test_commit_wrong_digest(content_target: ContentTarget) -> None:
    t = content_target
    data, dgst = blob(2048)
    _, other = blob(2048)
    ref = new_ref("baddigest")
    s = Stream(t)
    await s.send(action=content_pb2.STAT, ref=ref)
    await s.send(action=content_pb2.WRITE, offset=0, data=data)
    with raises(errdefs.FailedPrecondition):
        await s.send(action=content_pb2.COMMIT, offset=len(data), expected=other)
    for d in (dgst, other):
        with raises(errdefs.NotFound):
            await info(t, d)
    # nothing was committed; the ingest is still there to retry or abort
    assert (await status(t, ref)).offset == len(data)
    await t.store().abort(ref)


async def test_commit_wrong_size(content_target: ContentTarget) -> None:
    t = content_target
    data, dgst = blob(2048)
    ref = new_ref("badsize")
    s = Stream(t)
    await s.send(action=content_pb2.STAT, ref=ref)
    await s.send(action=content_pb2.WRITE, offset=0, data=data)
    with raises(errdefs.FailedPrecondition):
        await s.send(action=content_pb2.COMMIT, offset=len(data), total=len(data) + 1)
    with raises(errdefs.NotFound):
        await info(t, dgst)
    # a new writer resumes the same ingest and commits it with the right size
    s2 = Stream(t)
    assert (await s2.send(action=content_pb2.STAT, ref=ref)).offset == len(data)
    done = await s2.send(action=content_pb2.COMMIT, offset=len(data), total=len(data))
    assert done.digest == dgst
    await s2.finish()


async def test_commit_existing_blob(content_target: ContentTarget) -> None:
    t = content_target
    data, dgst = blob(3000)
    await commit_blob(t, data)
    ref = new_ref("again")
    s = Stream(t)
    await s.send(action=content_pb2.STAT, ref=ref)
    await s.send(action=content_pb2.WRITE, offset=0, data=data)
    with raises(errdefs.AlreadyExists):
        await s.send(action=content_pb2.COMMIT, offset=len(data))
    with raises(errdefs.NotFound):
        await status(t, ref)
    assert await read_all(t, dgst) == data


async def test_expected_digest_already_committed(content_target: ContentTarget) -> None:
    t = content_target
    data, dgst = blob(1500)
    await commit_blob(t, data)
    # named on the first message: refused before anything is written
    with raises(errdefs.AlreadyExists):
        await Stream(t).send(action=content_pb2.STAT, ref=new_ref("exp1"), expected=dgst)
    # named later: refused at that message and the ingest is dropped
    ref = new_ref("exp2")
    s = Stream(t)
    await s.send(action=content_pb2.STAT, ref=ref)
    await s.send(action=content_pb2.WRITE, offset=0, data=data[:10])
    with raises(errdefs.AlreadyExists):
        await s.send(action=content_pb2.WRITE, offset=10, data=data[10:], expected=dgst)
    with raises(errdefs.NotFound):
        await status(t, ref)


async def test_expected_digest_existing_with_other_bytes(content_target: ContentTarget) -> None:
    """Other bytes committed under the digest of an existing blob: containerd
    answers AlreadyExists for the blob it has (it checks the expected digest
    before the bytes) and drops the ingest; the bytes are never committed."""
    t = content_target
    data, dgst = blob(1200)
    await commit_blob(t, data)
    other, other_dgst = blob(1000)
    ref = new_ref("existing-other")
    s = Stream(t)
    await s.send(action=content_pb2.STAT, ref=ref)
    await s.send(action=content_pb2.WRITE, offset=0, data=other)
    with raises(errdefs.AlreadyExists):
        await s.send(action=content_pb2.COMMIT, offset=len(other), expected=dgst)
    with raises(errdefs.NotFound):
        await info(t, other_dgst)
    with raises(errdefs.NotFound):
        await status(t, ref)
    assert await list_digests(t, f"digest=={other_dgst}") == []
    assert await read_all(t, dgst) == data


async def _shape_commit_only(s: Stream, ref: str, data: bytes, expected: str) -> int:
    """One COMMIT carrying everything: ref, the bytes at offset 0 and the digest."""
    with raises(errdefs.FailedPrecondition, match="unexpected commit digest"):
        await s.send(action=content_pb2.COMMIT, ref=ref, offset=0, data=data, expected=expected)
    return len(data)


async def _shape_restart(s: Stream, ref: str, data: bytes, expected: str) -> int:
    """STAT naming the digest, then the bytes written from offset 0."""
    await s.send(action=content_pb2.STAT, ref=ref, expected=expected)
    resp = await s.send(action=content_pb2.WRITE, offset=0, data=data, expected=expected)
    assert resp.offset == len(data)
    with raises(errdefs.FailedPrecondition, match="unexpected commit digest"):
        await s.send(action=content_pb2.COMMIT, offset=len(data), expected=expected)
    return len(data)


async def _shape_append(s: Stream, ref: str, data: bytes, expected: str) -> int:
    """STAT naming the digest, then the bytes appended where it says the ingest is
    (after the other namespace's blob, under the shared policy)."""
    first = await s.send(action=content_pb2.STAT, ref=ref, expected=expected)
    resp = await s.send(action=content_pb2.WRITE, offset=first.offset, data=data)
    assert resp.offset == first.offset + len(data)
    with raises(errdefs.FailedPrecondition, match="unexpected commit digest"):
        await s.send(action=content_pb2.COMMIT, offset=resp.offset, expected=expected)
    return resp.offset


async def test_expected_digest_of_another_namespace_needs_matching_bytes(
    content_target: ContentTarget,
) -> None:
    """Naming a digest another namespace holds does not commit other bytes
    under it: FailedPrecondition, nothing shows in this namespace, and the
    ingest stays with what was written (containerd's local writer keeps it)."""
    t = content_target
    if not t.namespaced:
        pytest.skip("the target has no namespaces")
    async with other_namespace(t) as elsewhere:
        theirs, dgst = blob(500)
        await commit_blob(elsewhere, theirs)
        for shape in (_shape_commit_only, _shape_restart, _shape_append):
            ours, ours_dgst = blob(1000)
            ref = new_ref(shape.__name__)
            s = Stream(t)
            kept = await shape(s, ref, ours, dgst)
            for d in (dgst, ours_dgst):
                with raises(errdefs.NotFound):
                    await info(t, d)
                with raises(errdefs.NotFound):
                    await read_all(t, d)
                assert await list_digests(t, f"digest=={d}") == [], shape.__name__
            assert (await status(t, ref)).offset == kept, shape.__name__
            await t.store().abort(ref)
        # the other namespace's blob is untouched
        assert await read_all(elsewhere, dgst) == theirs


async def test_expected_digest_of_another_namespace_without_bytes(
    content_target: ContentTarget,
) -> None:
    """Shared policy: naming the digest (and no other size) is enough, the
    ingest starts complete and commits at once; isolated: the bytes must be
    sent.  Either way this namespace ends up reading the very same bytes."""
    t = content_target
    if not t.namespaced:
        pytest.skip("the target has no namespaces")
    async with other_namespace(t) as elsewhere:
        theirs, dgst = blob(700)
        await commit_blob(elsewhere, theirs)
        # another size: never shared, the bytes must come
        ref = new_ref("othersize")
        s = Stream(t)
        first = await s.send(action=content_pb2.STAT, ref=ref, expected=dgst, total=701)
        assert first.offset == 0
        await s.finish()
        await t.store().abort(ref)

        ref = new_ref("bydigest")
        s = Stream(t)
        first = await s.send(action=content_pb2.STAT, ref=ref, expected=dgst)
        if t.shared:
            assert first.offset == len(theirs)
            assert first.digest == dgst
            done = await s.send(action=content_pb2.COMMIT, offset=len(theirs), expected=dgst)
            assert done.digest == dgst
            await s.finish()
        else:
            assert first.offset == 0
            with raises(errdefs.OutOfRange):
                await s.send(action=content_pb2.COMMIT, offset=len(theirs), expected=dgst)
            s = Stream(t)
            assert (await s.send(action=content_pb2.STAT, ref=ref, expected=dgst)).offset == 0
            await s.send(action=content_pb2.WRITE, offset=0, data=theirs)
            done = await s.send(action=content_pb2.COMMIT, offset=len(theirs), expected=dgst)
            assert done.digest == dgst
            await s.finish()
        assert (await info(t, dgst)).size == len(theirs)
        assert await read_all(t, dgst) == theirs
        with raises(errdefs.NotFound):
            await status(t, ref)


async def test_first_message_needs_ref(content_target: ContentTarget) -> None:
    with raises(errdefs.InvalidArgument):
        await Stream(content_target).send(action=content_pb2.STAT)


async def test_writer_client_round_trip(content_target: ContentTarget) -> None:
    """The proxy client's writer (the daemon's and the benchmark's client)."""
    store = content_target.store()
    data, dgst = blob(5 * MiB + 1)
    ref = new_ref("client")
    w = await store.writer(ref, total=len(data))
    assert await w.write(data[:MiB]) == MiB
    await w.close()
    w = await store.writer(ref, total=len(data))
    assert (await w.status()).offset == MiB
    assert await w.write(data[MiB:]) == len(data) - MiB
    assert w.digest() == dgst
    assert await w.commit(len(data), dgst, {"conformance": "client"}) == dgst
    got = await store.info(dgst)
    assert got.size == len(data)
    assert got.labels == {"conformance": "client"}
    async with await store.reader(dgst) as r:
        assert r.size == len(data)
        assert await r.read_at(MiB - 1, 3) == data[MiB - 1 : MiB + 2]
        assert b"".join([c async for c in r.chunks(10, 2 * MiB)]) == data[10 : 10 + 2 * MiB]


async def test_strict_rejects_negative_offsets(content_target: ContentTarget) -> None:
    t = content_target
    if not t.strict:
        pytest.skip("containerd clamps or ignores negative offsets")
    data, dgst = blob(100)
    await commit_blob(t, data)
    with raises(errdefs.InvalidArgument):
        await read_all(t, dgst, offset=-1)
    s = Stream(t)
    ref = new_ref("negative")
    await s.send(action=content_pb2.STAT, ref=ref)
    with raises(errdefs.InvalidArgument):
        await s.send(action=content_pb2.WRITE, offset=-5, data=b"x")
    with raises(errdefs.InvalidArgument):
        await Stream(t).send(action=content_pb2.STAT, ref=new_ref("bad"), expected="sha256:zz")
    await t.store().abort(ref)


# -- reads ----------------------------------------------------------------------


async def test_read_offsets(content_target: ContentTarget) -> None:
    t = content_target
    data, dgst = blob(2 * MiB + MiB // 2)
    await commit_blob(t, data)
    call = t.stub().Read(content_pb2.ReadContentRequest(digest=dgst), metadata=t.md)
    chunks = [(r.offset, len(r.data)) async for r in call]
    assert chunks == [(0, MiB), (MiB, MiB), (2 * MiB, MiB // 2)]
    assert await read_all(t, dgst, offset=100, size=50) == data[100:150]
    assert await read_all(t, dgst, offset=MiB + 1) == data[MiB + 1 :]
    # a size past the end stops at the end
    assert await read_all(t, dgst, offset=len(data) - 10, size=1000) == data[-10:]
    # answers count offsets from the requested offset, not from the blob start
    call = t.stub().Read(
        content_pb2.ReadContentRequest(digest=dgst, offset=1000, size=MiB + 5), metadata=t.md
    )
    assert [(r.offset, len(r.data)) async for r in call] == [(0, MiB), (MiB, 5)]


async def test_read_past_end(content_target: ContentTarget) -> None:
    t = content_target
    data, dgst = blob(100)
    await commit_blob(t, data)
    assert await read_all(t, dgst, offset=100) == b""
    with raises(errdefs.OutOfRange, match="read past object length 100 bytes"):
        await read_all(t, dgst, offset=101)
    _, unknown = blob(1)
    with raises(errdefs.NotFound):
        await read_all(t, unknown)
    with raises(errdefs.InvalidArgument):
        await read_all(t, "sha256:nothex")


# -- info, update, list, delete ------------------------------------------------


async def test_info_of_unknown_and_malformed(content_target: ContentTarget) -> None:
    t = content_target
    _, unknown = blob(10)
    with raises(errdefs.NotFound):
        await info(t, unknown)
    for bad in ("", "sha256", "sha256:abc", "md5:" + "0" * 32, "sha256:" + "G" * 64):
        with raises(errdefs.InvalidArgument):
            await info(t, bad)


async def test_labels_on_commit_and_update(content_target: ContentTarget) -> None:
    t = content_target
    data, dgst = blob(700)
    await commit_blob(t, data, labels={"a": "1", "b": "2"})
    assert dict((await info(t, dgst)).labels) == {"a": "1", "b": "2"}
    store = t.store()
    got = await store.info(dgst)
    updated = await store.update(
        Info(dgst, 0, got.created_at, got.updated_at, {"b": "", "c": "3"}),
        ["labels.b", "labels.c"],
    )
    assert dict(updated.labels) == {"a": "1", "c": "3"}
    assert dict((await info(t, dgst)).labels) == {"a": "1", "c": "3"}


async def test_update_field_paths(content_target: ContentTarget) -> None:
    t = content_target
    data, dgst = blob(800)
    await commit_blob(t, data, labels={"keep": "x", "drop": "y"})
    stub = t.stub()

    async def update(labels: Mapping[str, str], *paths: str) -> content_pb2.Info:
        req = content_pb2.UpdateRequest(
            info=content_pb2.Info(digest=dgst, labels=dict(labels)),
            update_mask=field_mask_pb2.FieldMask(paths=paths),
        )
        with errgrpc.translate():
            return (await stub.Update(req, metadata=t.md)).info

    got = await update({"new": "1"}, "labels.new")
    assert dict(got.labels) == {"keep": "x", "drop": "y", "new": "1"}
    assert got.size == len(data)
    assert got.updated_at.seconds > 0
    # a path whose key is missing from the request removes that label
    got = await update({}, "labels.drop")
    assert dict(got.labels) == {"keep": "x", "new": "1"}
    # "labels" replaces the whole set, as does an empty mask
    got = await update({"only": "this"}, "labels")
    assert dict(got.labels) == {"only": "this"}
    got = await update({"mask": "empty"})
    assert dict(got.labels) == {"mask": "empty"}
    with raises(errdefs.InvalidArgument):
        await update({}, "size")
    _, unknown = blob(5)
    with raises(errdefs.NotFound):
        req = content_pb2.UpdateRequest(info=content_pb2.Info(digest=unknown))
        await stub.Update(req, metadata=t.md)


async def test_label_size_limit(content_target: ContentTarget) -> None:
    t = content_target
    data, dgst = blob(900)
    with raises(errdefs.InvalidArgument, match="maximum size"):
        await commit_blob(t, data, labels={"big": "v" * 4094})
    with raises(errdefs.NotFound):
        await info(t, dgst)
    await commit_blob(t, data, labels={"big": "v" * 4093})  # 3 + 4093 = 4096: allowed
    req = content_pb2.UpdateRequest(
        info=content_pb2.Info(digest=dgst, labels={"k" * 4000: "v" * 97}),
        update_mask=field_mask_pb2.FieldMask(paths=["labels"]),
    )
    with raises(errdefs.InvalidArgument, match="maximum size"):
        await t.stub().Update(req, metadata=t.md)
    assert dict((await info(t, dgst)).labels) == {"big": "v" * 4093}
    # only the labels the field paths name are looked at
    req = content_pb2.UpdateRequest(
        info=content_pb2.Info(digest=dgst, labels={"k" * 4000: "v" * 97, "ok": "1"}),
        update_mask=field_mask_pb2.FieldMask(paths=["labels.ok"]),
    )
    with errgrpc.translate():
        got = (await t.stub().Update(req, metadata=t.md)).info
    assert dict(got.labels) == {"big": "v" * 4093, "ok": "1"}


async def test_list_filters(content_target: ContentTarget) -> None:
    t = content_target
    tag = uuid.uuid4().hex
    blobs = [blob(300 + i)[0] for i in range(3)]
    digests = [
        await commit_blob(t, data, labels={"suite": tag, "index": str(i)})
        for i, data in enumerate(blobs)
    ]
    flat = sorted(d for batch in await list_digests(t, f"labels.suite=={tag}") for d in batch)
    assert flat == sorted(digests)
    assert await list_digests(t, f"labels.suite=={tag},labels.index==1") == [[digests[1]]]
    # several filters: any of them
    flat = sorted(
        d
        for batch in await list_digests(t, f"digest=={digests[0]}", f"digest=={digests[2]}")
        for d in batch
    )
    assert flat == sorted([digests[0], digests[2]])
    assert await list_digests(t, f"labels.suite=={tag},labels.index~=^[12]$") != []
    assert await list_digests(t, "labels.suite==nothing-has-this") == []
    with raises(errdefs.InvalidArgument):
        await list_digests(t, "labels.suite==")
    # containerd's List leaves updated_at unset: Go's zero time on the wire
    call = t.stub().List(
        content_pb2.ListContentRequest(filters=[f"digest=={digests[0]}"]), metadata=t.md
    )
    infos = [i async for resp in call for i in resp.info]
    assert len(infos) == 1
    assert infos[0].size == len(blobs[0])
    assert infos[0].created_at.seconds > 0
    assert infos[0].updated_at.seconds == GO_ZERO_SECONDS
    assert dict(infos[0].labels) == {"suite": tag, "index": "0"}


async def test_list_batches(content_target: ContentTarget) -> None:
    t = content_target
    tag = uuid.uuid4().hex
    sem = asyncio.Semaphore(8)

    async def one(i: int) -> str:
        async with sem:
            return await commit_blob(t, os.urandom(64), labels={"batch": tag})

    digests = await asyncio.gather(*(one(i) for i in range(230)))
    batches = await list_digests(t, f"labels.batch=={tag}")
    assert [len(b) for b in batches] == [100, 100, 30]
    assert sorted(d for b in batches for d in b) == sorted(digests)


async def test_delete(content_target: ContentTarget) -> None:
    t = content_target
    data, dgst = blob(400)
    await commit_blob(t, data, labels={"x": "y"})
    stub = t.stub()
    with errgrpc.translate():
        await stub.Delete(content_pb2.DeleteContentRequest(digest=dgst), metadata=t.md)
    with raises(errdefs.NotFound):
        await info(t, dgst)
    with raises(errdefs.NotFound):
        await read_all(t, dgst)
    with raises(errdefs.NotFound):
        await stub.Delete(content_pb2.DeleteContentRequest(digest=dgst), metadata=t.md)
    with raises(errdefs.InvalidArgument):
        await stub.Delete(content_pb2.DeleteContentRequest(digest="nope"), metadata=t.md)
    # the same bytes can be committed again, without the old labels
    await commit_blob(t, data)
    assert dict((await info(t, dgst)).labels) == {}


# -- ingests --------------------------------------------------------------------


async def test_status(content_target: ContentTarget) -> None:
    t = content_target
    ref = new_ref("status")
    s = Stream(t)
    await s.send(action=content_pb2.STAT, ref=ref, total=1000)
    await s.send(action=content_pb2.WRITE, offset=0, data=b"z" * 250)
    st = await status(t, ref)
    assert (st.ref, st.offset, st.total) == (ref, 250, 1000)
    assert st.started_at.seconds > 0
    await s.finish()
    with raises(errdefs.NotFound):
        await status(t, new_ref("unknown"))
    await t.store().abort(ref)


def _ns(ts: Any) -> int:
    return int(ts.seconds) * 1_000_000_000 + int(ts.nanos)


async def test_status_times_lie_within_the_writes(content_target: ContentTarget) -> None:
    # containerd's content test suite (checkResumeWriter): an ingest's updated
    # time lies between the client's clock before and after its last write -
    # also once its writer is closed and a new one opened.
    t = content_target
    ref = new_ref("times")
    before_start = time.time_ns()
    s = Stream(t)
    await s.send(action=content_pb2.STAT, ref=ref, total=256)
    after_start = time.time_ns()
    await s.send(action=content_pb2.WRITE, offset=0, data=b"t" * 128)
    after_write = time.time_ns()
    window = (after_start, after_write)

    def check(st: Any) -> None:
        assert before_start <= _ns(st.started_at) <= after_start
        assert window[0] <= _ns(st.updated_at) <= window[1], (_ns(st.updated_at), window)

    # A writer's own status (what containerd's test reads): the Status call
    # may see a file's modification time, which a coarse clock sets early.
    check(await s.send(action=content_pb2.STAT, ref=ref))
    await s.finish()
    s2 = Stream(t)
    check(await s2.send(action=content_pb2.STAT, ref=ref, total=256))
    window = (time.time_ns(), window[1])
    await s2.send(action=content_pb2.WRITE, offset=128, data=b"u" * 128)
    window = (window[0], time.time_ns())
    check(await s2.send(action=content_pb2.STAT, ref=ref))
    await s2.finish()
    await t.store().abort(ref)


async def test_list_statuses_filters(content_target: ContentTarget) -> None:
    t = content_target
    tag = uuid.uuid4().hex
    refs = [f"ls-{tag}-{i}" for i in range(3)]
    for i, ref in enumerate(refs):
        s = Stream(t)
        await s.send(action=content_pb2.STAT, ref=ref, total=100)
        await s.send(action=content_pb2.WRITE, offset=0, data=b"q" * (i + 1))
        await s.finish()
    stub = t.stub()

    async def list_refs(*filters: str) -> dict[str, int]:
        with errgrpc.translate():
            resp = await stub.ListStatuses(
                content_pb2.ListStatusesRequest(filters=filters), metadata=t.md
            )
        return {s.ref: s.offset for s in resp.statuses if tag in s.ref}

    assert await list_refs() == {refs[0]: 1, refs[1]: 2, refs[2]: 3}
    assert await list_refs(f"ref=={refs[1]}") == {refs[1]: 2}
    assert await list_refs(f"ref~=^ls-{tag}-[02]$") == {refs[0]: 1, refs[2]: 3}
    assert await list_refs(f"ref=={refs[0]}", f"ref=={refs[2]}") == {refs[0]: 1, refs[2]: 3}
    with raises(errdefs.InvalidArgument):
        await list_refs("ref==")
    for ref in refs:
        await t.store().abort(ref)
    assert await list_refs() == {}


async def test_abort(content_target: ContentTarget) -> None:
    t = content_target
    ref = new_ref("abort")
    s = Stream(t)
    await s.send(action=content_pb2.STAT, ref=ref)
    await s.send(action=content_pb2.WRITE, offset=0, data=b"partial")
    await s.finish()
    store = t.store()
    await store.abort(ref)
    with raises(errdefs.NotFound):
        await status(t, ref)
    with raises(errdefs.NotFound):
        await store.abort(ref)
    # a new writer on the ref starts from nothing
    s2 = Stream(t)
    assert (await s2.send(action=content_pb2.STAT, ref=ref)).offset == 0
    await s2.finish()
    await store.abort(ref)
