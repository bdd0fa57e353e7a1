"""Compression detection and decoding, and digest verification in the applier."""

from __future__ import annotations

import asyncio
import functools
import gzip
import os
import threading
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import zstandard

from api import errdefs
from services.content.local import LocalContentStore
from services.diff import mediatypes
from services.diff.applier import FileSystemApplier
from services.diff.compression import (
    CHUNK,
    Compression,
    Compressor,
    GzipDecoder,
    detect,
    find_unpigz,
    inflate_gzip,
    inflate_zstd,
    isal_zlib,
)
from services.diff.content import ContentAdapter
from services.diff.differ import Descriptor, Mount
from services.diff.fetch import ranged_chunks
from services.diff.metrics import DiffMetrics
from services.diff.mounts import Mounter
from tests.diff import layers as L
from tests.support import need_root


class Chunks:
    def __init__(self, data: bytes, size: int = 4099) -> None:
        self._parts = [data[i : i + size] for i in range(0, len(data), size)]

    def get(self) -> bytes:
        return self._parts.pop(0) if self._parts else b""


def inflate(fn: object, data: bytes) -> bytes:
    out: list[bytes] = []

    def sink(piece: bytes) -> None:
        assert len(piece) <= CHUNK
        out.append(piece)

    fn(Chunks(data), sink)  # type: ignore[operator]
    return b"".join(out)


def test_detection() -> None:
    assert detect(gzip.compress(b"x")) is Compression.GZIP
    assert detect(zstandard.ZstdCompressor().compress(b"x")) is Compression.ZSTD
    skippable = (0x184D2A5A).to_bytes(4, "little") + (4).to_bytes(4, "little") + b"skip"
    assert detect(skippable) is Compression.ZSTD
    assert detect(L.layer([L.file("f", b"f")])) is Compression.NONE
    assert detect(b"") is Compression.NONE
    assert detect(b"\x1f\x8b") is Compression.NONE  # too short to be gzip


def _gunzip(isal: bool) -> object:
    if isal and isal_zlib is None:
        pytest.skip("the isal package is not installed")
    return functools.partial(inflate_gzip, isal=isal)


@pytest.mark.parametrize("isal", [False, True], ids=["zlib", "isal"])
def test_gzip_members_and_bounded_output(isal: bool) -> None:
    a, b = os.urandom(300_000), bytes(5 << 20)  # the zeros inflate ~1000x
    data = gzip.compress(a) + gzip.compress(b)
    assert inflate(_gunzip(isal), data) == a + b


@pytest.mark.parametrize(
    "data",
    [
        gzip.compress(b"x" * 1000)[:-6],
        gzip.compress(b"x" * 1000) + b"trailing",
        gzip.compress(b"x" * 1000)[:20] + b"\x00" * 10 + gzip.compress(b"x" * 1000)[30:],
    ],
    ids=["truncated", "trailing-garbage", "corrupt"],
)
@pytest.mark.parametrize("isal", [False, True], ids=["zlib", "isal"])
def test_gzip_errors(data: bytes, isal: bool) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="gzip"):
        inflate(_gunzip(isal), data)


def test_zstd_frames_and_skippable_frames() -> None:
    c = zstandard.ZstdCompressor()
    skippable = (0x184D2A50).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    data = c.compress(b"one") + skippable + c.compress(bytes(3 << 20))
    assert inflate(inflate_zstd, data) == b"one" + bytes(3 << 20)
    with pytest.raises(errdefs.InvalidArgument, match="zstd"):
        inflate(inflate_zstd, data[:-5])


@pytest.mark.parametrize("compression", list(Compression))
def test_compressor_round_trip(compression: Compression) -> None:
    c = Compressor(compression)
    payload = os.urandom(1000) + bytes(100_000)
    out = c.compress(payload[:50_000]) + c.compress(payload[50_000:]) + c.flush()
    decoded = {
        Compression.NONE: lambda d: d,
        Compression.GZIP: lambda d: zlib.decompress(d, 31),
        Compression.ZSTD: lambda d: zstandard.ZstdDecompressor().decompressobj().decompress(d),
    }[compression](out)
    assert decoded == payload


def test_unpigz_can_be_disabled() -> None:
    assert find_unpigz({"CONTAINERD_DISABLE_PIGZ": "1"}) is None
    assert GzipDecoder.choose("zlib", {}) == GzipDecoder("zlib")
    with pytest.raises(ValueError, match="unknown"):
        GzipDecoder.choose("brotli", {})


# -- the applier, in-process, on a local content store -------------------------


def no_temp_mounts(mounter: Mounter) -> bool:
    return not os.path.exists(mounter.location) or os.listdir(mounter.location) == []


class Setup:
    def __init__(self, base: Path, gzip: GzipDecoder) -> None:
        self.store = LocalContentStore(base / "content")
        self.content = ContentAdapter(self.store)
        self.mounter = Mounter(str(base / "diff"))
        self.applier = FileSystemApplier(self.content, self.mounter, gzip=gzip)
        self.base = base
        self.n = 0

    def target(self) -> tuple[Path, list[Mount]]:
        self.n += 1
        path = self.base / f"target{self.n}"
        path.mkdir()
        return path, [Mount("bind", str(path), ("rbind", "rw"))]

    async def put(self, blob: bytes, media_type: str) -> Descriptor:
        digest = L.digest(blob)
        writer = await self.store.writer(f"ref-{digest}", len(blob), digest)
        await writer.write(blob)
        await writer.commit(len(blob), digest)
        return Descriptor(media_type, digest, len(blob))


@pytest.fixture(params=["zlib", "isal", "unpigz"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Setup:
    need_root()
    try:
        gzip = GzipDecoder.choose(request.param, {})
    except ValueError as e:
        pytest.skip(f"{e} (pip install isal / apt-get install pigz)")
    return Setup(tmp_path, gzip)


TAR = L.layer([L.dir("d"), L.file("d/f", os.urandom(70_000)), L.file("d/zeros", bytes(1 << 20))])


@pytest.mark.root
@pytest.mark.parametrize(
    "compression, media_type",
    [
        ("gzip", mediatypes.LAYER_GZIP),
        ("zstd", mediatypes.LAYER_ZSTD),
        ("none", mediatypes.LAYER),
        ("gzip", mediatypes.DOCKER_LAYER),  # "unknown": detected
        ("gzip", mediatypes.DOCKER_LAYER_GZIP),
        ("none", mediatypes.LAYER_GZIP),  # declared compressed, plainly tar: detected
        ("zstd", mediatypes.LAYER_GZIP),  # containerd goes by the magic number
    ],
)
async def test_apply_reports_the_uncompressed_descriptor(
    setup: Setup, compression: str, media_type: str
) -> None:
    desc = await setup.put(L.compress(TAR, compression), media_type)
    path, mounts = setup.target()
    applied = await setup.applier.apply(desc, mounts)
    assert applied == Descriptor(mediatypes.LAYER, L.digest(TAR), len(TAR))
    assert (path / "d" / "zeros").stat().st_size == 1 << 20
    assert no_temp_mounts(setup.mounter)


@pytest.mark.root
async def test_unknown_media_type_is_not_implemented_before_any_read(setup: Setup) -> None:
    _path, mounts = setup.target()
    desc = Descriptor("application/vnd.example.not-a-layer", "sha256:" + "0" * 64, 1)
    with pytest.raises(errdefs.NotImplemented):
        await setup.applier.apply(desc, mounts)


@pytest.mark.root
async def test_missing_blob_is_not_found(setup: Setup) -> None:
    _, mounts = setup.target()
    with pytest.raises(errdefs.NotFound):
        await setup.applier.apply(Descriptor(mediatypes.LAYER, L.digest(b"nope"), 4), mounts)
    assert no_temp_mounts(setup.mounter)


def _corrupt(store: LocalContentStore, digest: str, edit: object) -> None:
    path = store.blob_path(digest)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    edit(data)  # type: ignore[operator]
    path.write_bytes(bytes(data))


@pytest.mark.root
async def test_corrupt_plain_blob_fails_the_digest_check(setup: Setup) -> None:
    desc = await setup.put(TAR, mediatypes.LAYER)

    def flip(data: bytearray) -> None:
        data[2048] ^= 0xFF  # inside d/f's data: the tar stays valid

    _corrupt(setup.store, desc.digest, flip)
    path, mounts = setup.target()
    with pytest.raises(errdefs.FailedPrecondition, match="digest"):
        await setup.applier.apply(desc, mounts)
    # As with containerd, the target holds the (corrupt) layer: the caller discards it.
    assert (path / "d" / "f").exists()
    assert no_temp_mounts(setup.mounter)


@pytest.mark.root
@pytest.mark.parametrize("damage", ["flip", "truncate"])
async def test_corrupt_gzip_blob_is_an_invalid_archive(setup: Setup, damage: str) -> None:
    blob = L.compress(TAR, "gzip")
    desc = await setup.put(blob, mediatypes.LAYER_GZIP)

    def edit(data: bytearray) -> None:
        if damage == "flip":
            data[len(data) // 2] ^= 0xFF
        else:
            del data[len(data) // 2 :]

    _corrupt(setup.store, desc.digest, edit)
    _, mounts = setup.target()
    with pytest.raises((errdefs.InvalidArgument, errdefs.FailedPrecondition)):
        await setup.applier.apply(desc, mounts)
    assert no_temp_mounts(setup.mounter)


@pytest.mark.root
async def test_descriptor_size_must_match(setup: Setup) -> None:
    desc = await setup.put(TAR, mediatypes.LAYER)
    _, mounts = setup.target()
    wrong = Descriptor(desc.media_type, desc.digest, desc.size + 1)
    with pytest.raises(errdefs.FailedPrecondition, match="bytes"):
        await setup.applier.apply(wrong, mounts)


class _SlowStore:
    """A content store whose blob trickles out, to cancel an apply mid-way."""

    def __init__(self, inner: ContentAdapter) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def reader(self, digest: str) -> object:
        real = await self._inner.reader(digest)

        class Slow:
            size = real.size

            async def chunks(
                self, offset: int = 0, size: int = 0, chunk: int = 0
            ) -> AsyncIterator[bytes]:
                async for data in real.chunks():
                    for i in range(0, len(data), 1024):
                        yield data[i : i + 1024]
                        await asyncio.sleep(0.01)

            async def close(self) -> None:
                await real.close()

        return Slow()


@pytest.mark.root
async def test_cancelled_apply_stops_its_threads_and_unmounts(setup: Setup) -> None:
    desc = await setup.put(L.compress(TAR, "gzip"), mediatypes.LAYER_GZIP)
    applier = FileSystemApplier(
        _SlowStore(setup.content),  # type: ignore[arg-type]
        setup.mounter,
        metrics=DiffMetrics(__import__("prometheus_client").CollectorRegistry()),
    )
    _, mounts = setup.target()
    task = asyncio.ensure_future(applier.apply(desc, mounts))
    await asyncio.sleep(0.3)
    assert os.listdir(setup.mounter.location) != []  # mounted and working
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert no_temp_mounts(setup.mounter)
    await asyncio.sleep(0.1)  # threads end just after they report
    names = {t.name for t in threading.enumerate()}
    assert not names & {"extract", "decompress", "unpigz-feed"}


async def test_ranged_fetch_keeps_order_and_checks_length(tmp_path: Path) -> None:
    store = LocalContentStore(tmp_path / "content")
    blob = os.urandom(5_000_001)
    digest = L.digest(blob)
    writer = await store.writer("ranged", len(blob), digest)
    await writer.write(blob)
    await writer.commit(len(blob), digest)
    reader = await store.reader(digest)
    try:
        got = [c async for c in ranged_chunks(reader, segment=300_007, parallel=3)]
        assert b"".join(got) == blob

        class Short:
            size = reader.size + 1

            def chunks(
                self, offset: int = 0, size: int = 0, chunk: int = 0
            ) -> AsyncIterator[bytes]:
                return reader.chunks(offset, min(size, reader.size - offset) if size else 0)

            async def close(self) -> None:
                pass

        with pytest.raises(errdefs.DataLoss):
            async for _ in ranged_chunks(Short(), segment=1 << 20):  # type: ignore[arg-type]
                pass
    finally:
        await reader.close()
