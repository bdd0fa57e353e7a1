"""A full disk under the content plugin, seen through a real berthd and ctr
(a tiny tmpfs under the plugin's root, as root): the error says the disk is
full and the ingest keeps what was written, to be resumed once there is room."""

from __future__ import annotations

import hashlib
import os

import grpc
import pytest

from services.content.proxy import ProxyContentStore
from services.harness.server import CHANNEL_OPTIONS
from tests.content.tinyfs import tiny_tmpfs
from tests.metadata.berthd import metadata_berthd
from tests.support import need_root, short_tmpdir
from tests.support.containerd import need_containerd

pytestmark = [pytest.mark.containerd, pytest.mark.root]

MiB = 1 << 20


async def test_ingest_meets_a_full_disk_and_resumes() -> None:
    need_containerd()
    need_root()
    data = os.urandom(3 * MiB)
    dgst = "sha256:" + hashlib.sha256(data).hexdigest()
    with short_tmpdir("bdf") as d, tiny_tmpfs(d / "content", "1m") as fs, metadata_berthd(d) as b:
        b.wait_startup_gc()  # what follows is held by no lease
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
        assert "Traceback" not in b.output()
