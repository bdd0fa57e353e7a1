"""A disk that fills up under an ingest, for real (a tiny tmpfs, as root).

As containerd: what reached the disk stays in the ingest for a resume.  Unlike
containerd (Unknown), the error is ResourceExhausted and says the disk is full;
the free space is a metric, so an operator sees it coming.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import grpc
import pytest

from api import errdefs
from services.content.local import LocalContentStore
from services.content.proxy import ProxyContentStore
from services.harness.server import CHANNEL_OPTIONS
from tests.content.plugin import running_plugin
from tests.content.test_process import samples, scrape
from tests.content.tinyfs import tiny_tmpfs
from tests.support import free_port, short_tmpdir

pytestmark = pytest.mark.root

MiB = 1 << 20


def blob(size: int) -> tuple[bytes, str]:
    data = os.urandom(size)
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


async def test_local_store_keeps_what_was_written(tmp_path: Path) -> None:
    with tiny_tmpfs(tmp_path / "fs", "1m") as fs:
        store = LocalContentStore(fs.where / "content")
        free, total = store.disk_space()
        assert 0 < free <= total <= MiB
        data, dgst = blob(2 * MiB)
        w = await store.writer("full", total=len(data))
        with pytest.raises(errdefs.ResourceExhausted, match="ingest ref full: no space left"):
            await w.write(data)
        st = await w.status()
        assert 0 < st.offset < len(data)
        assert w.digest() == "sha256:" + hashlib.sha256(data[: st.offset]).hexdigest()
        await w.close()
        assert store.disk_space()[0] < 64 * 1024
        # a new writer sees the same ingest, byte for byte
        st = await store.status("full")
        assert st.total == len(data)
        kept = st.offset
        assert kept > 0
        fs.resize("8m")
        w = await store.writer("full", total=len(data))
        assert (await w.status()).offset == kept
        await w.write(data[kept:])
        assert await w.commit(len(data), dgst) == dgst
        async with await store.reader(dgst) as r:
            assert await r.read_at(0, len(data)) == data


async def test_plugin_says_the_disk_is_full_and_exports_free_space() -> None:
    with short_tmpdir("bdf") as d, tiny_tmpfs(d / "root", "1m") as fs:
        metrics = f"127.0.0.1:{free_port()}"
        with running_plugin(d, metrics) as plugin:
            page = samples(await asyncio.to_thread(scrape, metrics))
            assert 0 < page[("berthd_content_store_free_bytes", ())] <= MiB
            assert page[("berthd_content_store_capacity_bytes", ())] == MiB
            async with grpc.aio.insecure_channel(
                f"unix://{plugin.address}", options=CHANNEL_OPTIONS
            ) as ch:
                store = ProxyContentStore(ch)
                data, dgst = blob(3 * MiB)
                w = await store.writer("full", total=len(data))
                # One message at a time: with several in flight, the stream's
                # status can be lost to grpc-core's "Internal error from Core"
                # when the server ends it while the client is still sending.
                with pytest.raises(
                    errdefs.ResourceExhausted, match="ingest ref full: no space left on device"
                ):
                    for i in range(0, len(data), 256 * 1024):
                        await w.write(data[i : i + 256 * 1024])
                await w.close()
                kept = (await store.status("full")).offset
                assert 0 < kept < MiB
                page = samples(await asyncio.to_thread(scrape, metrics))
                assert page[("berthd_content_store_free_bytes", ())] < 64 * 1024
                fs.resize("8m")
                w = await store.writer("full", total=len(data))
                assert w.offset == kept
                await w.write(data[kept:])
                assert await w.commit(len(data), dgst) == dgst
                assert (await store.info(dgst)).size == len(data)
        assert "Traceback" not in plugin.output()


async def test_pipelined_write_on_a_full_disk_says_so() -> None:
    """Several messages in flight when the plugin ends the stream: the error is
    the plugin's (ResourceExhausted naming the disk), never grpc-core's
    "Internal error from Core" for a send that found the stream closed."""
    with short_tmpdir("bdp") as d, tiny_tmpfs(d / "root", "1m"):
        with running_plugin(d) as plugin:
            async with grpc.aio.insecure_channel(
                f"unix://{plugin.address}", options=CHANNEL_OPTIONS
            ) as ch:
                store = ProxyContentStore(ch)
                data, _ = blob(8 * MiB)
                # The send that meets the closed stream races the status;
                # several rounds make the race come up.
                for attempt in range(10):
                    ref = f"full-{attempt}"
                    w = await store.writer(ref, total=len(data))
                    with pytest.raises(
                        errdefs.ResourceExhausted,
                        match=f"ingest ref {ref}: no space left on device",
                    ):
                        await w.write(data)  # 8 chunks of 1 MiB, pipelined
                    await w.close()
                    await store.abort(ref)
        assert "Traceback" not in plugin.output()
