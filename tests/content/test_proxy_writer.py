"""A writer whose opening is sent but not waited for
(``ProxyContentStore.start_writer``), against our content plugin."""

from __future__ import annotations

import hashlib

import grpc
import pytest

from api import errdefs
from services.content.proxy import ProxyContentStore
from tests.content.plugin import running_plugin
from tests.support import short_tmpdir


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def test_the_opening_is_answered_with_the_next_operation() -> None:
    with short_tmpdir("pw") as d, running_plugin(d) as plugin:
        async with grpc.aio.insecure_channel("unix://" + plugin.address) as ch:
            store = ProxyContentStore(ch)
            holder = await store.writer("taken")
            # Sent, and not refused yet: the refusal is the next answer read.
            w = await store.start_writer("taken")
            with pytest.raises(errdefs.Unavailable, match="locked"):
                await w.answered()
            await w.close()
            await holder.close()

            # A free ref: the first write goes right behind the opening, and
            # its answer is read after the opening's.
            w = await store.start_writer("free", 3)
            assert await w.write(b"abc") == 3
            await w.answered()  # read already, with the write's
            assert await w.commit(3, sha(b"abc")) == sha(b"abc")
            assert (await store.info(sha(b"abc"))).size == 3
