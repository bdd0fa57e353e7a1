"""The walking differ: compare by walking both trees; apply with the filesystem applier.

``compare`` is containerd's walkingDiff.Compare (v1.6.20:diff/walking/differ.go):
both mount lists are mounted read-only on temporary directories, the changes
are written as a tar through a compressor into a content ingest (the given
ref, truncated, or a fresh unique one that is aborted on failure), committed
with the caller's labels plus ``containerd.io/uncompressed`` for compressed
media types, and the label is added afterwards if the blob already existed
without it.  zstd and ``source_date_epoch`` are containerd 1.7 additions.

Pipeline: changes and tar on one thread, compression on another, the upload
on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from api import errdefs
from services.diff import mediatypes, stages
from services.diff.applier import FileSystemApplier, mounted
from services.diff.changes import changes
from services.diff.changewriter import ChangeWriter
from services.diff.channel import Channel
from services.diff.compression import Compression, Compressor, GzipDecoder, Hasher
from services.diff.differ import BlobWriter, ContentStore, Descriptor, Mount
from services.diff.metrics import DiffMetrics
from services.diff.mounts import Mounter

log = logging.getLogger(__name__)

_COMPRESSION = {
    mediatypes.LAYER: Compression.NONE,
    mediatypes.LAYER_GZIP: Compression.GZIP,
    mediatypes.LAYER_ZSTD: Compression.ZSTD,
}
_FLUSH = 1 << 20
_UPLOAD_BATCH = 4 << 20


def unique_ref() -> str:
    return f"{time.time_ns()}-{base64.urlsafe_b64encode(os.urandom(3)).decode()}"


class _Buffered:
    """Collects small writes into chunks of about ``_FLUSH`` bytes for a channel."""

    def __init__(self, channel: Channel, hasher: Hasher) -> None:
        self._channel = channel
        self._hasher = hasher
        self._parts: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        self._hasher.update(data)
        self._parts.append(data)
        self._size += len(data)
        if self._size >= _FLUSH:
            self.flush()

    def flush(self) -> None:
        if self._parts:
            self._channel.put(b"".join(self._parts))
            self._parts, self._size = [], 0


class WalkingDiffer:
    """Applier and Comparer over one namespace's content store."""

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
        self._metrics = metrics
        self._applier = FileSystemApplier(content, mounter, gzip=gzip, metrics=metrics)

    async def apply(
        self,
        desc: Descriptor,
        mounts: Sequence[Mount],
        payloads: Mapping[str, bytes] | None = None,
        *,
        sync_fs: bool = False,
    ) -> Descriptor:
        return await self._applier.apply(desc, mounts, payloads, sync_fs=sync_fs)

    async def compare(
        self,
        lower: Sequence[Mount],
        upper: Sequence[Mount],
        media_type: str = "",
        ref: str = "",
        labels: Mapping[str, str] | None = None,
        *,
        source_date_epoch: datetime | None = None,
    ) -> Descriptor:
        media_type = media_type or mediatypes.LAYER_GZIP
        compression = _COMPRESSION.get(media_type)
        if compression is None:
            raise errdefs.NotImplemented(f"unsupported diff media type: {media_type}")
        if not upper:
            raise errdefs.InvalidArgument("upper mounts: at least one mount is required")
        epoch = int(source_date_epoch.timestamp()) if source_date_epoch is not None else None
        started = time.perf_counter()
        label = mediatypes.metric_label(media_type)
        written = 0
        ok = False
        try:
            async with (
                mounted(self._mounter, lower, read_only=True) as lower_root,
                mounted(self._mounter, upper, read_only=True) as upper_root,
            ):
                desc, written = await self._write_layer(
                    lower_root,
                    upper_root,
                    compression,
                    media_type,
                    ref,
                    dict(labels or {}),
                    epoch,
                )
            ok = True
            return desc
        finally:
            if self._metrics is not None:
                self._metrics.diffed(label, ok, time.perf_counter() - started, written)

    async def _write_layer(
        self,
        lower_root: str,
        upper_root: str,
        compression: Compression,
        media_type: str,
        ref: str,
        labels: dict[str, str],
        epoch: int | None,
    ) -> tuple[Descriptor, int]:
        new_ref = not ref
        ref = ref or unique_ref()
        writer = await self._content.writer(ref)
        try:
            if not new_ref:
                await writer.truncate(0)
            uncompressed, blob, size = await self._stream(
                writer, lower_root, upper_root, compression, epoch
            )
            if compression is not Compression.NONE:
                labels[mediatypes.UNCOMPRESSED_LABEL] = uncompressed
            with contextlib.suppress(errdefs.AlreadyExists):
                await writer.commit(0, blob, labels)
        except BaseException:
            await writer.close()
            if new_ref:
                try:
                    await self._content.abort(ref)
                except errdefs.ErrdefsError as e:
                    log.warning("failed to delete diff upload %s: %s", ref, e)
            raise
        info = await self._content.info(blob)
        if compression is not Compression.NONE and mediatypes.UNCOMPRESSED_LABEL not in info.labels:
            # The blob existed before without the label.
            await self._content.update_labels(blob, {mediatypes.UNCOMPRESSED_LABEL: uncompressed})
        return Descriptor(media_type, info.digest, info.size), size

    async def _stream(
        self,
        writer: BlobWriter,
        lower_root: str,
        upper_root: str,
        compression: Compression,
        epoch: int | None,
    ) -> tuple[str, str, int]:
        """Write the layer; answers its uncompressed digest, its digest and its size."""
        plain = Channel()
        out = Channel()
        plain_hasher, blob_hasher = Hasher(), Hasher()

        def stop(_: BaseException | None = None) -> None:
            plain.abort()
            out.abort()

        def write_tar() -> None:
            sink = _Buffered(plain, plain_hasher)
            cw = ChangeWriter(sink.write, os.fsencode(upper_root), source_date_epoch=epoch)
            for change in changes(os.fsencode(lower_root), os.fsencode(upper_root)):
                cw.handle(change.kind, change.path, change.st)
            cw.close()
            sink.flush()
            plain.close()

        def compress() -> None:
            c = Compressor(compression)
            while chunk := plain.get():
                data = c.compress(chunk)
                if data:
                    blob_hasher.update(data)
                    out.put(data)
            tail = c.flush()
            if tail:
                blob_hasher.update(tail)
                out.put(tail)
            out.close()

        async def upload() -> None:
            try:
                while chunk := await out.aget():
                    batch = [chunk]
                    size = len(chunk)
                    # Send what is already waiting in one pipelined write.
                    while size < _UPLOAD_BATCH and (more := out.get_nowait()):
                        batch.append(more)
                        size += len(more)
                    await writer.write(b"".join(batch) if len(batch) > 1 else chunk)
            except BaseException:
                stop()
                raise

        futures: list[asyncio.Future[Any]] = [
            stages.start(write_tar, "diff-tar", stop),
            stages.start(compress, "diff-compress", stop),
            asyncio.ensure_future(upload()),
        ]
        await stages.wait_all(futures, stop)
        return plain_hasher.digest(), blob_hasher.digest(), blob_hasher.size
