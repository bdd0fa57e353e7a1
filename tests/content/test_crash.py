"""kill -9 of the plugin in the middle of a 500 MiB write, then resume.

The client is the real gRPC client (ProxyContentStore) over the plugin's
socket; the data is generated on the fly, chunk by chunk, so any offset the
restarted plugin reports can be resumed from.  A watcher thread checks the
blob directory the whole time: a blob file is either absent or complete.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from api import errdefs
from services.content.proxy import ProxyContentStore
from services.harness.server import CHANNEL_OPTIONS
from tests.content.plugin import ContentPlugin
from tests.support import short_tmpdir

pytestmark = pytest.mark.slow

MiB = 1 << 20
SIZE = 500 * MiB
CHUNK = 4 * MiB
KILL_AFTER = 200 * MiB
SEED = 0xBE27


def chunk(index: int) -> bytes:
    """The ``index``-th CHUNK of the data, the same on every call."""
    n = min(CHUNK, SIZE - index * CHUNK)
    return random.Random(SEED + index).randbytes(n)


def data_from(offset: int) -> Iterator[bytes]:
    first = offset // CHUNK
    yield chunk(first)[offset - first * CHUNK :]
    for i in range(first + 1, (SIZE + CHUNK - 1) // CHUNK):
        yield chunk(i)


def expected_digest() -> str:
    h = hashlib.sha256()
    for part in data_from(0):
        h.update(part)
    return "sha256:" + h.hexdigest()


class BlobWatcher(threading.Thread):
    """Fails if a blob file ever shows up with less than its full size."""

    def __init__(self, blobs: Path) -> None:
        super().__init__(daemon=True)
        self.blobs = blobs
        self.stop = threading.Event()
        self.partial: list[tuple[str, int]] = []
        self.looks = 0

    def run(self) -> None:
        while not self.stop.is_set():
            self.looks += 1
            try:
                entries = list(os.scandir(self.blobs))
            except FileNotFoundError:
                entries = []
            for entry in entries:
                try:
                    size = entry.stat().st_size
                except FileNotFoundError:
                    continue
                if size != SIZE:
                    self.partial.append((entry.name, size))
            self.stop.wait(0.005)


async def test_kill_during_write_then_resume() -> None:
    digest = await asyncio.to_thread(expected_digest)
    ref = "crash-test"
    with short_tmpdir("bck") as d:
        plugin = ContentPlugin(d)
        plugin.start()
        watcher = BlobWatcher(plugin.root / "blobs" / "sha256")
        watcher.start()
        try:
            sent = await write_until_killed(plugin, ref, digest)
            assert plugin.proc is not None
            assert plugin.proc.wait() == -signal.SIGKILL
            plugin.proc = None
            # nothing was published; the ingest is on disk
            assert not any(p.is_file() for p in (plugin.root / "blobs").rglob("*"))
            assert len(list((plugin.root / "ingest").iterdir())) == 1

            plugin.start()  # same root, same socket path (the stale socket is replaced)
            async with grpc.aio.insecure_channel(
                f"unix://{plugin.address}", options=CHANNEL_OPTIONS
            ) as ch:
                store = ProxyContentStore(ch)
                with pytest.raises(errdefs.NotFound):
                    await store.info(digest)
                st = await store.status(ref)
                assert (st.ref, st.total) == (ref, SIZE)
                assert KILL_AFTER <= st.offset <= sent

                w = await store.writer(ref, total=SIZE, expected=digest)
                status = await w.status()
                assert status.offset == st.offset
                for part in data_from(status.offset):
                    await w.write(part)
                assert await w.commit(SIZE, digest) == digest

                info = await store.info(digest)
                assert info.size == SIZE
                h = hashlib.sha256()
                async with await store.reader(digest) as r:
                    async for part in r.chunks():
                        h.update(part)
                assert "sha256:" + h.hexdigest() == digest
                with pytest.raises(errdefs.NotFound):
                    await store.status(ref)
        finally:
            watcher.stop.set()
            watcher.join()
            plugin.stop()
        assert watcher.looks > 10
        assert watcher.partial == []


async def write_until_killed(plugin: ContentPlugin, ref: str, digest: str) -> int:
    """Stream the data until the plugin dies under us; returns the bytes sent."""
    assert plugin.proc is not None
    proc = plugin.proc
    sent = 0
    async with grpc.aio.insecure_channel(f"unix://{plugin.address}", options=CHANNEL_OPTIONS) as ch:
        w = await ProxyContentStore(ch).writer(ref, total=SIZE, expected=digest)
        with pytest.raises(errdefs.ErrdefsError):
            for part in data_from(0):
                if sent >= KILL_AFTER:
                    # kill while a write is in flight, not between two
                    write = asyncio.ensure_future(w.write(part))
                    await asyncio.sleep(0.001)
                    proc.signal(signal.SIGKILL)
                    await write
                else:
                    await w.write(part)
                sent += len(part)
        await w.close()
    return sent + CHUNK  # the chunk in flight may have landed too
