"""Ingests on disk and the writer that fills them.

The layout is containerd's ``content/local``: ``<root>/ingest/<sha256 of ref>/``
holds ``data`` (the bytes so far), ``ref``, ``startedat``, ``updatedat`` (Go
``time.MarshalText`` text) and, when known, ``total``.  Hashing the ref keeps
paths short whatever the ref is.  Everything here is blocking; the writer
runs each step in a worker thread and serialises them with a thread lock, so
a cancelled caller never leaves two threads on one file descriptor.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Protocol, TypeVar

from api import errdefs
from services.content.store import Data, NsTime, Status
from services.content.validation import CANONICAL, validate_labels


class Publisher(Protocol):
    """Where a committed ingest goes (the local store's ``publish``)."""

    def publish(self, ingest: Path, ref: str, digest: str, labels: Mapping[str, str] | None) -> str:
        """Move the verified ingest into place as ``digest``; answer the digest.

        Raises AlreadyExists when the blob is already there."""
        ...


log = logging.getLogger(__name__)

T = TypeVar("T")


def ingest_dir(root: Path, ref: str) -> Path:
    return root / "ingest" / hashlib.sha256(ref.encode()).hexdigest()


def format_time(ns: int) -> str:
    """RFC 3339 with trimmed nanoseconds, as Go's ``Time.MarshalText`` writes UTC."""
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000))
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def parse_time(text: str) -> datetime:
    """Inverse of ``format_time``; also reads containerd's files with any offset."""
    m = _TIME.match(text.strip())
    if m is None:
        raise ValueError(f"bad timestamp {text!r}")
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    whole = datetime.fromisoformat(f"{m.group(1)}{zone}")
    frac = int((m.group(2) or "").ljust(9, "0"))
    return NsTime.of(int(whole.timestamp()) * 1_000_000_000 + frac)


_FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}


def is_full(e: OSError) -> bool:
    return e.errno in _FULL


@contextlib.contextmanager
def disk_full_is_exhausted(what: str) -> Iterator[None]:
    """Turn ENOSPC and EDQUOT into ResourceExhausted saying the disk is full.

    containerd hands these to gRPC unconverted (Unknown); the class tells a
    client that retrying after space is freed can work, and the message
    says what ran out.
    """
    try:
        yield
    except OSError as e:
        if not is_full(e):
            raise
        raise errdefs.ResourceExhausted(f"{what}: {_FULL[e.errno or 0]}") from None


def write_atomic(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Replace ``path`` by a temp file, so a reader sees old or new, never half;
    synced first unless ``sync`` is False (then a crash may leave it empty)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_status(path: Path) -> Status:
    """Status of the ingest directory ``path``; NotFound when it is gone or unfinished."""
    try:
        st = os.stat(path / "data")
        ref = (path / "ref").read_text()
        started = parse_time((path / "startedat").read_text())
        updated = parse_time((path / "updatedat").read_text())
    except FileNotFoundError as e:
        raise errdefs.NotFound(f"ingest {path.name}: {e.strerror}") from None
    except ValueError as e:
        # A torn timestamp file (a crash while it was created): as good as
        # absent, so listings skip it and a new writer starts over.
        raise errdefs.NotFound(f"ingest {path.name}: {e}") from None
    # updatedat is only rewritten when a writer closes: the data file may be newer.
    modified = NsTime.of(st.st_mtime_ns)
    return Status(
        ref=ref,
        offset=st.st_size,
        total=read_total(path),
        started_at=started,
        updated_at=max(updated, modified),
    )


def read_total(path: Path) -> int:
    try:
        return int((path / "total").read_text())
    except (OSError, ValueError):
        return 0


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalWriter:
    """The one writer holding ``ref``; created by ``LocalContentStore.writer``."""

    def __init__(
        self,
        store: Publisher,
        ref: str,
        path: Path,
        fd: int,
        hasher: hashlib._Hash,
        offset: int,
        total: int,
        started_ns: int,
        updated_ns: int,
        release: Callable[[], None],
    ) -> None:
        self._store = store
        self._ref = ref
        self._path = path
        self._fd: int | None = fd
        self._hasher = hasher
        self._offset = offset
        self._total = total
        self._started_ns = started_ns
        self._updated_ns = updated_ns
        self._release = release
        self._io = threading.Lock()
        self._finished = False

    @property
    def ref(self) -> str:
        return self._ref

    async def status(self) -> Status:
        return Status(
            ref=self._ref,
            offset=self._offset,
            total=self._total,
            started_at=NsTime.of(self._started_ns),
            updated_at=NsTime.of(self._updated_ns),
        )

    def digest(self) -> str:
        return f"{CANONICAL}:{self._hasher.hexdigest()}"

    async def write(self, data: Data) -> int:
        return await asyncio.to_thread(self._locked, self._write, data)

    async def truncate(self, size: int) -> None:
        if size != 0:
            raise errdefs.InvalidArgument(f"truncate to {size}: only 0 is supported")
        await asyncio.to_thread(self._locked, self._truncate)

    async def commit(
        self, size: int = 0, expected: str = "", labels: Mapping[str, str] | None = None
    ) -> str:
        return await self._finish(lambda: self._commit(size, expected, labels))

    async def close(self) -> None:
        if self._finished:
            return
        await self._finish(self._close)

    # -- blocking parts, always under self._io ---------------------------------

    def _locked(self, fn: Callable[..., T], *args: object) -> T:
        with self._io, disk_full_is_exhausted(f"ingest ref {self._ref}"):
            return fn(*args)

    def _open_fd(self) -> int:
        if self._fd is None:
            raise errdefs.FailedPrecondition("cannot write on closed writer")
        return self._fd

    def _write(self, data: Data) -> int:
        fd = self._open_fd()
        view = memoryview(data)
        done = 0
        try:
            while done < len(view):
                done += os.write(fd, view[done:])
        finally:
            # What reached the file stays, as containerd keeps it (the disk
            # filling up mid-write, say): hash and offset cover exactly the
            # file, so a later writer resumes right after it.
            if done:
                self._hasher.update(view[:done])
                self._offset += done
                self._updated_ns = time.time_ns()
        return done

    def _truncate(self) -> None:
        fd = self._open_fd()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        self._hasher = hashlib.sha256()
        self._offset = 0
        self._updated_ns = time.time_ns()

    def _close(self) -> str:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                write_atomic(self._path / "updatedat", format_time(self._updated_ns).encode())
            except FileNotFoundError:
                pass  # aborted while we held it
            except OSError as e:
                if not is_full(e):
                    raise
                # The data file's mtime stands in for it (read_status).
                log.warning("ingest ref %s: cannot record its update time: %s", self._ref, e)
        return ""

    def _commit(self, size: int, expected: str, labels: Mapping[str, str] | None) -> str:
        if self._fd is None:
            raise errdefs.FailedPrecondition("cannot commit on closed writer")
        fd, self._fd = self._fd, None
        try:
            os.fsync(fd)
            actual = os.fstat(fd).st_size
        finally:
            os.close(fd)
        validate_labels(labels)
        if actual != self._offset:
            raise errdefs.DataLoss(
                f"ingest ref {self._ref}: data is {actual} bytes, {self._offset} were written"
            )
        if size > 0 and size != actual:
            raise errdefs.FailedPrecondition(f"unexpected commit size {actual}, expected {size}")
        dgst = self.digest()
        if expected and expected != dgst:
            raise errdefs.FailedPrecondition(
                f"unexpected commit digest {dgst}, expected {expected}"
            )
        return self._store.publish(self._path, self._ref, dgst, labels)

    async def _finish(self, step: Callable[[], str]) -> str:
        """Run the last step in a thread; the ref is released when it is done,
        even if our caller is cancelled meanwhile."""
        if self._finished:
            raise errdefs.FailedPrecondition("cannot commit on closed writer")
        self._finished = True
        fut = asyncio.get_running_loop().run_in_executor(None, self._locked, step)

        def done(f: asyncio.Future[str]) -> None:
            self._release()
            if not f.cancelled():
                f.exception()  # consumed here when the caller went away

        fut.add_done_callback(done)
        return await asyncio.shield(fut)


def remove_ingest(path: Path, ref: str) -> None:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError:
        log.exception("failed to remove ingest directory %s (ref %s)", path, ref)
