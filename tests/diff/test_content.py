"""The differ's content access with a direct read store: the namespaced store decides."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from api import errdefs
from services.content.local import LocalContentStore
from services.diff.content import ContentAdapter


async def put(store: LocalContentStore, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    w = await store.writer(f"ref-{digest[7:19]}", len(data))
    await w.write(data)
    return await w.commit(len(data), digest)


async def read_all(adapter: ContentAdapter, digest: str) -> bytes:
    reader = await adapter.reader(digest)
    async with reader:
        return b"".join([c async for c in reader.chunks()])


async def test_blob_the_namespace_lacks_is_not_found_even_where_the_bytes_are(
    tmp_path: Path,
) -> None:
    namespaced = LocalContentStore(tmp_path / "ns")
    blobs = LocalContentStore(tmp_path / "blobs")
    digest = await put(blobs, b"someone else's layer")
    adapter = ContentAdapter(namespaced, blobs)
    with pytest.raises(errdefs.NotFound):
        await adapter.reader(digest)
    with pytest.raises(errdefs.NotFound):
        await adapter.reader("sha256:" + "0" * 64)


async def test_blob_only_the_namespaced_store_has_is_read_there(tmp_path: Path) -> None:
    """As a blob only another node of a cluster holds: the daemon fetches it on read."""
    namespaced = LocalContentStore(tmp_path / "ns")
    blobs = LocalContentStore(tmp_path / "blobs")
    digest = await put(namespaced, b"fetched on read")
    assert await read_all(ContentAdapter(namespaced, blobs), digest) == b"fetched on read"


async def test_blob_both_have_reads_the_same_bytes(tmp_path: Path) -> None:
    namespaced = LocalContentStore(tmp_path / "ns")
    blobs = LocalContentStore(tmp_path / "blobs")
    data = b"layer bytes" * 1000
    digest = await put(namespaced, data)
    assert await put(blobs, data) == digest
    assert await read_all(ContentAdapter(namespaced, blobs), digest) == data
