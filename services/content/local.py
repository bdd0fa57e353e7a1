"""A content store on a local directory, laid out as containerd's ``content/local``.

``<root>/blobs/<alg>/<hex>`` are committed blobs (read-only files; mtime is
the commit time, atime the last label update, as containerd keeps them);
``<root>/ingest/...`` the ingests (see ``services.content.ingest``);
``<root>/labels/<alg>/<hex>`` a JSON sidecar with a blob's labels, which
containerd keeps in its metadata database instead.

A blob only ever appears by ``rename`` of a complete, fsynced file, followed
by an fsync of its directory: a reader never sees part of one and a crash
never leaves one.  All blocking work runs in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api import errdefs, filters
from services.content.ingest import (
    LocalWriter,
    disk_full_is_exhausted,
    format_time,
    fsync_dir,
    ingest_dir,
    read_status,
    remove_ingest,
    write_atomic,
)
from services.content.store import (
    READ_CHUNK,
    ContentStore,
    Info,
    NsTime,
    ReaderAt,
    Status,
    ns_of,
)
from services.content.validation import ALGORITHMS, split_digest, validate_labels

log = logging.getLogger(__name__)

_HASH_BUFFER = 1 << 20
_LOCK_ATTEMPTS = 10
_READ_AHEAD = 4  # chunks per read in the worker thread


class LocalReader(ReaderAt):
    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size
        # reads still running in a worker thread: close() waits for them, so
        # the descriptor is never closed (and reused) under a pread
        self._inflight: set[asyncio.Future[Any]] = set()

    @property
    def size(self) -> int:
        return self._size

    async def read_at(self, offset: int, n: int) -> bytes:
        if offset > self._size:
            raise errdefs.OutOfRange(f"read past object length {self._size} bytes")
        fut = asyncio.get_running_loop().run_in_executor(None, os.pread, self._fd, n, offset)
        self._inflight.add(fut)
        fut.add_done_callback(self._inflight.discard)
        return await fut

    async def chunks(
        self, offset: int = 0, size: int = 0, chunk: int = READ_CHUNK
    ) -> AsyncIterator[bytes]:
        if offset > self._size:
            raise errdefs.OutOfRange(f"read past object length {self._size} bytes")
        end = self._size if size <= 0 else min(self._size, offset + size)
        loop = asyncio.get_running_loop()

        def read_batch(start: int) -> list[bytes]:
            # Several chunks per trip to the worker thread.
            parts = []
            for pos in range(start, min(end, start + _READ_AHEAD * chunk), chunk):
                data = os.pread(self._fd, min(chunk, end - pos), pos)
                if not data:
                    break
                parts.append(data)
            return parts

        def start(pos: int) -> asyncio.Future[list[bytes]]:
            fut = loop.run_in_executor(None, read_batch, pos)
            self._inflight.add(fut)
            fut.add_done_callback(self._inflight.discard)
            return fut

        # The next batch is read while the current one is consumed.
        pending = start(offset) if offset < end else None
        while pending is not None:
            parts = await pending
            offset += sum(len(p) for p in parts)
            pending = start(offset) if parts and offset < end else None
            for part in parts:
                yield part

    async def close(self) -> None:
        if self._fd >= 0:
            for fut in list(self._inflight):
                with contextlib.suppress(Exception):
                    await fut
            fd, self._fd = self._fd, -1
            os.close(fd)


class LocalContentStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        (self.root / "ingest").mkdir(parents=True, exist_ok=True)
        (self.root / "blobs").mkdir(exist_ok=True)
        # ref -> wall time it was taken.  Per store, not per process: one
        # store object owns one root.
        self._locks: dict[str, float] = {}
        self._labels_lock = asyncio.Lock()

    # -- paths -----------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        try:
            alg, hexd = split_digest(digest)
        except errdefs.InvalidArgument as e:
            raise errdefs.InvalidArgument(
                f"cannot calculate blob path from invalid digest: {e.message}"
            ) from None
        return self.root / "blobs" / alg / hexd

    def _labels_path(self, digest: str) -> Path:
        alg, hexd = split_digest(digest)
        return self.root / "labels" / alg / hexd

    # -- blobs -----------------------------------------------------------------

    def _read_labels(self, digest: str) -> dict[str, str]:
        try:
            raw = self._labels_path(digest).read_bytes()
        except FileNotFoundError:
            return {}
        labels = json.loads(raw)
        return {str(k): str(v) for k, v in labels.items()}

    def _write_labels(self, digest: str, labels: Mapping[str, str] | None) -> dict[str, str]:
        """Store ``labels`` (empty values dropped, as containerd does); returns them."""
        kept = {k: v for k, v in (labels or {}).items() if v}
        path = self._labels_path(digest)
        if kept:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(kept, sort_keys=True).encode())
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return kept

    def _stat_info(self, digest: str) -> Info:
        path = self.blob_path(digest)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise errdefs.NotFound(f"content {digest}") from None
        return Info(
            digest=digest,
            size=st.st_size,
            created_at=NsTime.of(st.st_mtime_ns),
            updated_at=NsTime.of(st.st_atime_ns),
            labels=self._read_labels(digest),
        )

    async def info(self, digest: str) -> Info:
        return await asyncio.to_thread(self._stat_info, digest)

    async def update(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        path = self.blob_path(info.digest)
        replace_all = not fieldpaths
        changes: dict[str, str] = {}
        for fp in fieldpaths:
            if fp.startswith("labels."):
                key = fp[len("labels.") :]
                changes[key] = info.labels.get(key, "")
            elif fp == "labels":
                replace_all = True
            else:
                raise errdefs.InvalidArgument(
                    f"cannot update {fp!r} field on content info {info.digest!r}"
                )

        def apply() -> Info:
            current = self._stat_info(info.digest)
            labels = dict(info.labels) if replace_all else dict(current.labels)
            labels.update(changes)
            validate_labels(labels)
            kept = self._write_labels(info.digest, labels)
            now = time.time_ns()
            # containerd keeps "updated" in atime and "created" in mtime.
            try:
                os.utime(path, ns=(now, ns_of(current.created_at)))
            except OSError as e:
                log.warning("could not change access time for %s: %s", info.digest, e)
            return Info(
                digest=info.digest,
                size=current.size,
                created_at=current.created_at,
                updated_at=NsTime.of(now),
                labels=kept,
            )

        def apply_or_exhausted() -> Info:
            with disk_full_is_exhausted(f"content {info.digest}"):
                return apply()

        async with self._labels_lock:
            return await asyncio.to_thread(apply_or_exhausted)

    def _scan(self, flt: filters.Filter) -> list[Info]:
        found: list[Info] = []
        blobs = self.root / "blobs"
        for alg in sorted(os.listdir(blobs)):
            if alg not in ALGORITHMS:
                continue
            for entry in os.scandir(blobs / alg):
                try:
                    info = self._stat_info(f"{alg}:{entry.name}")
                except errdefs.InvalidArgument:
                    log.error("invalid digest for blob path %s", entry.path)
                    continue
                except errdefs.NotFound:
                    continue  # deleted while we looked
                if flt.match(filters.adapt_content_info(info.digest, info.labels)):
                    found.append(info)
        return found

    async def walk(self, filters_: Sequence[str] = ()) -> AsyncIterator[Info]:
        flt = filters.parse_all(*filters_)
        for info in await asyncio.to_thread(self._scan, flt):
            yield info

    async def delete(self, digest: str) -> None:
        path = self.blob_path(digest)

        def remove() -> None:
            try:
                path.unlink()
            except FileNotFoundError:
                raise errdefs.NotFound(f"content {digest}") from None
            with contextlib.suppress(FileNotFoundError):
                self._labels_path(digest).unlink()

        async with self._labels_lock:
            await asyncio.to_thread(remove)

    async def reader(self, digest: str) -> LocalReader:
        path = self.blob_path(digest)

        def open_blob() -> LocalReader:
            try:
                # O_NOATIME: a read must not move "updated" (kept in atime).
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_NOATIME)
                except PermissionError:
                    fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                raise errdefs.NotFound(f"content {digest}") from None
            return LocalReader(fd, os.fstat(fd).st_size)

        return await asyncio.to_thread(open_blob)

    # -- ingests ---------------------------------------------------------------

    async def status(self, ref: str) -> Status:
        return await asyncio.to_thread(read_status, ingest_dir(self.root, ref))

    def _statuses(self, flt: filters.Filter) -> list[Status]:
        found = []
        for entry in os.scandir(self.root / "ingest"):
            try:
                st = read_status(Path(entry.path))
            except (errdefs.NotFound, NotADirectoryError):
                continue  # committed or aborted while we looked
            if flt.match(filters.adapt_content_status(st.ref)):
                found.append(st)
        return found

    async def list_statuses(self, filters_: Sequence[str] = ()) -> list[Status]:
        flt = filters.parse_all(*filters_)
        return await asyncio.to_thread(self._statuses, flt)

    async def abort(self, ref: str) -> None:
        path = ingest_dir(self.root, ref)

        def remove() -> None:
            if not path.is_dir():
                raise errdefs.NotFound(f"ingest ref {ref!r}")
            remove_ingest(path, ref)

        await asyncio.to_thread(remove)

    async def _lock(self, ref: str) -> None:
        # containerd retries a taken ref ten times with a growing random
        # pause before giving up (content/local/store.go Writer, locks.go).
        for attempt in range(_LOCK_ATTEMPTS):
            if ref not in self._locks:
                self._locks[ref] = time.time()
                return
            await asyncio.sleep(random.randrange(1 << attempt) / 1000)
        since = self._locks[ref]
        raise errdefs.Unavailable(
            f"ref {ref} locked for {time.time() - since:.3f}s "
            f"(since {NsTime.of(int(since * 1e9)).isoformat()})"
        )

    def _unlock(self, ref: str) -> None:
        self._locks.pop(ref, None)

    async def writer(self, ref: str, total: int = 0, expected: str = "") -> LocalWriter:
        if not ref:
            raise errdefs.InvalidArgument("ref must not be empty")
        target = self.blob_path(expected) if expected else None
        await self._lock(ref)
        try:
            return await asyncio.to_thread(self._open_ingest, ref, total, target)
        except BaseException:
            self._unlock(ref)
            raise

    def _open_ingest(self, ref: str, total: int, target: Path | None) -> LocalWriter:
        if target is not None and target.exists():
            raise errdefs.AlreadyExists(f"content {target.parent.name}:{target.name}")
        with disk_full_is_exhausted(f"ingest ref {ref}"):
            return self._open_ingest_files(ref, total)

    def _open_ingest_files(self, ref: str, total: int) -> LocalWriter:
        path = ingest_dir(self.root, ref)
        try:
            path.mkdir(mode=0o755)
            resumed = None
        except FileExistsError:
            resumed = self._resume(path, ref, total)
        if resumed is not None:
            hasher, st = resumed
            fd = os.open(path / "data", os.O_WRONLY)
            os.lseek(fd, st.offset, os.SEEK_SET)
            return LocalWriter(
                self,
                ref,
                path,
                fd,
                hasher,
                offset=st.offset,
                # as containerd: a resumed ingest keeps the total it started with
                total=st.total,
                started_ns=ns_of(st.started_at),
                updated_ns=ns_of(st.updated_at),
                release=lambda: self._unlock(ref),
            )
        now = time.time_ns()
        # Synced as containerd syncs them: the times, not the ref and total.
        # A crash that leaves either torn makes the next writer start over
        # (see _resume), which is all an unsynced ingest could offer anyway.
        write_atomic(path / "ref", ref.encode(), sync=False)
        write_atomic(path / "startedat", format_time(now).encode())
        write_atomic(path / "updatedat", format_time(now).encode())
        if total > 0:
            write_atomic(path / "total", str(total).encode(), sync=False)
        else:
            with contextlib.suppress(FileNotFoundError):
                (path / "total").unlink()
        fd = os.open(path / "data", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        return LocalWriter(
            self,
            ref,
            path,
            fd,
            hashlib.sha256(),
            offset=0,
            total=total,
            started_ns=now,
            updated_ns=now,
            release=lambda: self._unlock(ref),
        )

    def _resume(self, path: Path, ref: str, total: int) -> tuple[hashlib._Hash, Status] | None:
        """The hash state and status of an ingest to continue; None to start over."""
        try:
            st = read_status(path)
        except errdefs.NotFound as e:
            log.info("ingest %s (ref %s) unreadable, starting over: %s", path.name, ref, e)
            return None
        if st.ref != ref:
            log.error("ingest %s holds ref %r, not %r; starting over", path.name, st.ref, ref)
            return None
        if total > 0 and st.total > 0 and total != st.total:
            log.info(
                "ingest ref %s: provided total %d differs from %d; starting over",
                ref,
                total,
                st.total,
            )
            return None
        hasher = hashlib.sha256()
        offset = 0
        with open(path / "data", "rb", buffering=0) as f:
            while chunk := f.read(_HASH_BUFFER):
                hasher.update(chunk)
                offset += len(chunk)
        return hasher, Status(
            ref=ref,
            offset=offset,
            total=st.total,
            started_at=st.started_at,
            updated_at=st.updated_at,
        )

    def publish(self, ingest: Path, ref: str, digest: str, labels: Mapping[str, str] | None) -> str:
        """Move a verified ingest into place as ``digest`` (blocking; the writer's
        commit calls it in its thread while it holds the ref)."""
        target = self.blob_path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            remove_ingest(ingest, ref)
            raise errdefs.AlreadyExists(f"content {digest}")
        # Labels first: a blob never shows up without the labels it was committed with.
        self._write_labels(digest, labels)
        try:
            os.rename(ingest / "data", target)
        except FileNotFoundError:
            raise errdefs.NotFound(f"ingest ref {ref!r} was aborted") from None
        fsync_dir(target.parent)
        now = time.time_ns()
        try:
            os.utime(target, ns=(now, now))
            os.chmod(target, os.stat(target).st_mode & 0o444)
        except OSError as e:
            log.warning("blob %s: could not set times or mode: %s", digest, e)
        remove_ingest(ingest, ref)
        return digest

    # -- scrape-time figures ---------------------------------------------------

    def usage(self) -> tuple[int, int, int]:
        """Blob count, blob bytes and on-disk ingest count (blocking)."""
        count = size = 0
        blobs = self.root / "blobs"
        for alg in os.listdir(blobs):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                for entry in os.scandir(blobs / alg):
                    with contextlib.suppress(FileNotFoundError):
                        size += entry.stat().st_size
                        count += 1
        ingests = sum(1 for _ in _iter_dir(self.root / "ingest"))
        return count, size, ingests

    def disk_space(self) -> tuple[int, int]:
        """Bytes free (for an unprivileged writer) and in all on the store's
        filesystem (blocking)."""
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def _iter_dir(path: Path) -> Iterator[os.DirEntry[str]]:
    try:
        yield from os.scandir(path)
    except FileNotFoundError:
        return


if TYPE_CHECKING:

    def _conforms(store: LocalContentStore) -> ContentStore:
        return store
