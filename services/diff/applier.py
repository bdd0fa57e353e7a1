"""Applying a layer blob onto mounts: containerd's fsApplier, as a pipeline.

Behaviour: v1.6.20:diff/apply/apply.go and apply_linux.go - the media type
chooses how to read the blob, a single writable overlay is written straight
into its upper directory (overlay whiteouts), anything else is mounted on a
temporary directory; the answer is the uncompressed tar's sha256 and size,
trailing bytes after the archive included.  In addition to containerd, the
blob's own digest (and size, when the descriptor has one) is verified as it
streams.

Speed: the blob is fetched on the event loop (a few range reads at once),
decompressed on one thread (ISA-L or zlib; or by ``unpigz``) and extracted
on another, with bounded channels between them, so network, inflate,
hashing and file writes overlap and a large layer never blocks other calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import subprocess
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from api import errdefs
from services.diff import mediatypes, stages
from services.diff.archive import Extractor
from services.diff.channel import Channel
from services.diff.compression import (
    DETECT_BYTES,
    Compression,
    FdSource,
    GzipDecoder,
    Hasher,
    HashingSource,
    Source,
    check_unpigz,
    detect,
    feed,
    inflate_gzip,
    inflate_zstd,
    start_unpigz,
)
from services.diff.differ import BlobReader, ContentStore, Descriptor, Mount
from services.diff.fetch import ranged_chunks
from services.diff.metrics import DiffMetrics
from services.diff.mounts import Mounter
from services.diff.overlay import OverlayWhiteouts, overlay_target
from services.diff.tarstream import TarStream

log = logging.getLogger(__name__)

_ALGORITHMS = ("sha256", "sha384", "sha512")


class _BlobHasher(Hasher):
    """A Hasher for the blob's own digest algorithm."""

    def __init__(self, digest: str) -> None:
        super().__init__()
        algorithm = digest.partition(":")[0]
        if algorithm not in _ALGORITHMS:
            raise errdefs.InvalidArgument(f"unsupported digest algorithm in {digest!r}")
        self._h = hashlib.new(algorithm)
        self._algorithm = algorithm

    def digest(self) -> str:
        return f"{self._algorithm}:{self._h.hexdigest()}"


@contextlib.asynccontextmanager
async def mounted(
    mounter: Mounter, mounts: Sequence[Mount], *, read_only: bool
) -> AsyncIterator[str]:
    """``Mounter.temp_mount`` with the (possibly slow) mount and unmount on a thread."""
    cm = mounter.temp_mount(mounts, read_only=read_only)
    root = await asyncio.to_thread(cm.__enter__)
    try:
        yield root
    except BaseException as e:
        await asyncio.shield(asyncio.to_thread(cm.__exit__, type(e), e, e.__traceback__))
        raise
    await asyncio.shield(asyncio.to_thread(cm.__exit__, None, None, None))


class FileSystemApplier:
    """The Applier of ``differ``, reading blobs from ``content``."""

    def __init__(
        self,
        content: ContentStore,
        mounter: Mounter,
        *,
        gzip: GzipDecoder | None = None,
        metrics: DiffMetrics | None = None,
    ) -> None:
        self._content = content
        self._mounter = mounter
        self._gzip = gzip or GzipDecoder("zlib")
        self._metrics = metrics

    async def apply(
        self,
        desc: Descriptor,
        mounts: Sequence[Mount],
        payloads: Mapping[str, bytes] | None = None,
        *,
        sync_fs: bool = False,
    ) -> Descriptor:
        declared = mediatypes.diff_compression(desc.media_type)
        if not mounts:
            raise errdefs.InvalidArgument("mounts: at least one mount is required")
        blob_hasher = _BlobHasher(desc.digest)
        label = mediatypes.metric_label(desc.media_type)
        started = time.perf_counter()
        ok = False
        try:
            reader = await self._content.reader(desc.digest)
            try:
                applied = await self._apply(desc, declared, reader, mounts, blob_hasher, sync_fs)
            finally:
                await reader.close()
            ok = True
        finally:
            if self._metrics is not None:
                self._metrics.applied(label, ok, time.perf_counter() - started, blob_hasher.size)
        log.debug(
            "diff applied: digest=%s media=%s size=%d uncompressed=%d in %.3fs",
            desc.digest,
            desc.media_type,
            desc.size,
            applied.size,
            time.perf_counter() - started,
        )
        return applied

    async def _apply(
        self,
        desc: Descriptor,
        declared: mediatypes.Declared,
        reader: BlobReader,
        mounts: Sequence[Mount],
        blob_hasher: Hasher,
        sync_fs: bool,
    ) -> Descriptor:
        target = overlay_target(mounts)
        if target is not None:
            extractor = Extractor(target.upper, OverlayWhiteouts(), target.lowers)
            result = await self._pipeline(reader, declared, extractor, blob_hasher)
            if sync_fs:
                await asyncio.to_thread(self._mounter.syncfs, target.upper)
        else:
            async with mounted(self._mounter, mounts, read_only=False) as root:
                result = await self._pipeline(reader, declared, Extractor(root), blob_hasher)
                if sync_fs:
                    await asyncio.to_thread(self._mounter.syncfs, root)
        digest, size = result
        if blob_hasher.digest() != desc.digest:
            raise errdefs.FailedPrecondition(
                f"blob {desc.digest}: content has digest {blob_hasher.digest()}; "
                "the layer was applied from corrupt content"
            )
        if desc.size > 0 and blob_hasher.size != desc.size:
            raise errdefs.FailedPrecondition(
                f"blob {desc.digest}: read {blob_hasher.size} bytes, descriptor says {desc.size}"
            )
        if self._metrics is not None:
            self._metrics.uncompressed_bytes.inc(size)
        return Descriptor(mediatypes.LAYER, digest, size)

    async def _pipeline(
        self,
        reader: BlobReader,
        declared: mediatypes.Declared,
        extractor: Extractor,
        blob_hasher: Hasher,
    ) -> tuple[str, int]:
        """Fetch, decompress and extract; answers the uncompressed digest and size."""
        chunks = ranged_chunks(reader)
        try:
            return await self._stages(chunks, declared, extractor, blob_hasher)
        finally:
            await chunks.aclose()

    async def _stages(
        self,
        chunks: AsyncGenerator[bytes, None],
        declared: mediatypes.Declared,
        extractor: Extractor,
        blob_hasher: Hasher,
    ) -> tuple[str, int]:
        head: list[bytes] = []
        compression = Compression.NONE
        if declared is not mediatypes.Declared.NONE:
            # Peek far enough to recognise the compression, as containerd does.
            seen = b""
            async for chunk in chunks:
                head.append(chunk)
                seen += chunk[:DETECT_BYTES]
                if len(seen) >= DETECT_BYTES:
                    break
            compression = detect(seen)

        compressed = Channel()
        plain = Channel()
        proc: subprocess.Popen[bytes] | None = None
        killed = False

        def stop(_: BaseException | None = None) -> None:
            nonlocal killed
            compressed.abort()
            plain.abort()
            if proc is not None and proc.poll() is None:
                killed = True
                proc.kill()

        async def fetch() -> None:
            try:
                for chunk in head:
                    await compressed.aput(chunk)
                async for chunk in chunks:
                    await compressed.aput(chunk)
                compressed.close()
            except BaseException:
                stop()
                raise

        futures: list[asyncio.Future[Any]] = [asyncio.ensure_future(fetch())]
        plain_hasher = Hasher()

        def extract_from(source: Source, hasher: Hasher) -> Callable[[], None]:
            def run() -> None:
                stream = TarStream(source, hasher)
                extractor.apply(stream)
                stream.drain()

            return run

        if compression is Compression.NONE:
            # The blob is the tar: one hash serves both digests.
            plain_hasher = blob_hasher
            futures.append(stages.start(extract_from(compressed, blob_hasher), "extract", stop))
        elif compression is Compression.GZIP and self._gzip.kind == "unpigz":
            proc = start_unpigz(self._gzip.unpigz)
            assert proc.stdin is not None and proc.stdout is not None
            stdin, stdout = proc.stdin, proc.stdout
            source = HashingSource(compressed, blob_hasher)
            futures.append(stages.start(lambda: feed(source, stdin), "unpigz-feed", stop))
            extract = extract_from(FdSource(stdout.fileno()), plain_hasher)
            futures.append(stages.start(extract, "extract", stop))
        else:
            source = HashingSource(compressed, blob_hasher)
            isal = self._gzip.kind == "isal"

            def decompress() -> None:
                if compression is Compression.GZIP:
                    inflate_gzip(source, plain.put, isal=isal)
                else:
                    inflate_zstd(source, plain.put)
                plain.close()

            futures.append(stages.start(decompress, "decompress", stop))
            futures.append(stages.start(extract_from(plain, plain_hasher), "extract", stop))

        try:
            await stages.wait_all(futures, stop)
        except BaseException:
            if proc is not None:
                died = await asyncio.shield(asyncio.to_thread(_finish, proc, killed))
                if died is not None:
                    raise died from None
            raise
        if proc is not None:
            died = await asyncio.to_thread(_finish, proc, killed)
            if died is not None:
                raise died
        return plain_hasher.digest(), plain_hasher.size


def _finish(proc: subprocess.Popen[bytes], killed: bool) -> errdefs.ErrdefsError | None:
    """Reap unpigz; its error when it failed on its own (corrupt input), not by our kill."""
    assert proc.stdout is not None
    proc.stdout.close()
    if proc.stdin is not None and not proc.stdin.closed:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
    try:
        check_unpigz(proc)
    except errdefs.ErrdefsError as e:
        return None if killed and proc.returncode < 0 else e
    return None
