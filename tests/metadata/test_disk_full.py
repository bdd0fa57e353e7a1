"""A full disk under the content plugin, seen through a real berthd and ctr
(a tiny tmpfs under the plugin's root, as root): the error says the disk is
full and the ingest keeps what was written, to be resumed once there is room."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator

import grpc
import pytest

from api import errdefs
from api.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from services.content.proxy import ProxyContentStore
from services.harness.server import CHANNEL_OPTIONS
from tests.content.tinyfs import TinyFs, tiny_tmpfs
from tests.metadata.berthd import metadata_berthd
from tests.support import need_root, short_tmpdir
from tests.support.berthd import Berthd
from tests.support.containerd import need_containerd

pytestmark = [pytest.mark.containerd, pytest.mark.root]

MiB = 1 << 20
DEFAULT_NS = (("containerd-namespace", "default"),)


@contextlib.contextmanager
def berthd_on_a_full_disk(prefix: str) -> Iterator[tuple[Berthd, TinyFs]]:
    """berthd whose content plugin writes to a 1 MiB tmpfs, past its start-up
    garbage collection (what the tests write is held by no lease); its log
    shows no traceback afterwards."""
    need_containerd()
    need_root()
    with short_tmpdir(prefix) as d, tiny_tmpfs(d / "content", "1m") as fs, metadata_berthd(d) as b:
        b.wait_startup_gc()
        yield b, fs
        assert "Traceback" not in b.output()


async def test_ingest_meets_a_full_disk_and_resumes() -> None:
    data = os.urandom(3 * MiB)
    dgst = "sha256:" + hashlib.sha256(data).hexdigest()
    with berthd_on_a_full_disk("bdf") as (b, fs):
        failed = b.ctr("content", "ingest", "big", input=data, check=False)
        assert failed.returncode != 0
        assert "ingest ref" in failed.stderr and "no space left on device" in failed.stderr
        active = [line.split() for line in b.ctr("content", "active").stdout.splitlines()[1:]]
        assert [row[0] for row in active] == ["big"]
        fs.resize("8m")
        async with grpc.aio.insecure_channel(f"unix://{b.address}", options=CHANNEL_OPTIONS) as ch:
            store = ProxyContentStore(ch, namespace="default")
            kept = (await store.status("big")).offset
            assert 0 < kept < MiB
            w = await store.writer("big")
            assert w.offset == kept
            await w.write(data[kept:])
            assert await w.commit(len(data), dgst) == dgst
        listed = b.ctr("content", "ls", "-q").stdout.split()
        assert listed == [dgst]


async def test_pipelined_writes_through_the_daemon_meet_a_full_disk() -> None:
    """Messages in flight on both hops (client -> daemon -> plugin) when the
    disk fills: the client gets the plugin's ResourceExhausted, not grpc-core's
    "Internal error from Core"."""
    data = os.urandom(8 * MiB)
    with berthd_on_a_full_disk("bdq") as (b, _):
        async with grpc.aio.insecure_channel(f"unix://{b.address}", options=CHANNEL_OPTIONS) as ch:
            store = ProxyContentStore(ch, namespace="default")
            for attempt in range(6):
                ref = f"full-{attempt}"
                w = await store.writer(ref, total=len(data))
                with pytest.raises(errdefs.ResourceExhausted, match="no space left on device"):
                    # 1 MiB messages, pipelined by this writer and by the daemon's
                    await w.write(data)
                await w.close()
                await store.abort(ref)


async def test_big_messages_through_the_daemon_meet_a_full_disk() -> None:
    """One 4 MiB message at a time from the client; the daemon pipelines each
    to the plugin in 1 MiB pieces, and answers with the plugin's status."""
    data = os.urandom(8 * MiB)
    with berthd_on_a_full_disk("bdr") as (b, _):
        async with grpc.aio.insecure_channel(f"unix://{b.address}", options=CHANNEL_OPTIONS) as ch:
            store = ProxyContentStore(ch, namespace="default")
            for attempt in range(6):
                ref = f"big-{attempt}"
                call = content_pb2_grpc.ContentStub(ch).Write(metadata=DEFAULT_NS)
                await call.write(content_pb2.WriteContentRequest(action=content_pb2.STAT, ref=ref))
                await call.read()
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    for i in range(0, len(data), 4 * MiB):
                        await call.write(
                            content_pb2.WriteContentRequest(
                                action=content_pb2.WRITE, offset=i, data=data[i : i + 4 * MiB]
                            )
                        )
                        await call.read()
                assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value
                assert "no space left on device" in (err.value.details() or "")
                await store.abort(ref)
