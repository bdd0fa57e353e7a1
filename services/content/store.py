"""The content store contract shared by the local store and the proxy client.

Vocabulary (containerd's):

- a *blob* is committed, immutable content named by its digest
  (``sha256:<hex>``); its ``Info`` carries size, timestamps and labels;
- an *ingest* is an unfinished write named by a caller-chosen *ref*; its
  ``Status`` says how far it got.  Ingests outlive the writer and the process
  that wrote them, so a later writer on the same ref resumes where it stopped;
- a *writer* is the one active session on a ref: at most one exists per ref at
  a time.  ``commit`` verifies size and digest and publishes the blob
  atomically; ``close`` leaves the ingest in place for a later resume.

Every method raises the typed errors of ``api.errdefs`` listed on it; any
other exception is a bug or an I/O failure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

READ_CHUNK = 1 << 20

# What a writer is given: bytes, or a view of bytes received (services.content.wire).
Data = bytes | memoryview


class NsTime(datetime):
    """A UTC time that keeps the nanoseconds it was made from.

    containerd's times are nanosecond-exact and so are berthd's records; a
    datetime alone holds microseconds.  Compared and formatted as the datetime
    it also is; ``services.content.convert.timestamp`` puts ``ns`` on the wire.
    A copy made by datetime's own methods (``replace``, arithmetic) has none.
    """

    ns: int | None = None

    @classmethod
    def of(cls, ns: int) -> NsTime:
        seconds, rest = divmod(ns, 1_000_000_000)
        whole = datetime.fromtimestamp(seconds, UTC)
        t = cls(*whole.timetuple()[:6], rest // 1000, UTC)
        t.ns = ns
        return t


def ns_of(t: datetime) -> int:
    """``t`` in nanoseconds since the epoch, exactly (no float on the way)."""
    if isinstance(t, NsTime) and t.ns is not None:
        return t.ns
    whole = t.replace(microsecond=0)
    return int(whole.timestamp()) * 1_000_000_000 + t.microsecond * 1000


@dataclass(frozen=True)
class Info:
    digest: str
    size: int
    created_at: datetime
    updated_at: datetime
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Status:
    ref: str
    offset: int
    total: int
    started_at: datetime
    updated_at: datetime
    expected: str = ""


class ReaderAt(Protocol):
    """Random access to one committed blob; close it (or use ``async with``)."""

    @property
    def size(self) -> int: ...

    async def read_at(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``offset``; fewer only at the end of the blob.

        Raises OutOfRange when ``offset`` is past the end.
        """
        ...

    def chunks(
        self, offset: int = 0, size: int = 0, chunk: int = READ_CHUNK
    ) -> AsyncIterator[bytes]:
        """The bytes from ``offset`` on, ``size`` of them (0: to the end), in chunks.

        Raises OutOfRange when ``offset`` is past the end.
        """
        ...

    async def close(self) -> None: ...

    # Readers that subclass ReaderAt take these two as they are.
    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class Writer(Protocol):
    """The active session on one ingest."""

    @property
    def ref(self) -> str: ...

    async def status(self) -> Status:
        """Offset, total and times of the ingest as this writer sees it."""
        ...

    def digest(self) -> str:
        """Digest of the bytes written so far ("" when the writer cannot know yet)."""
        ...

    async def write(self, data: Data) -> int:
        """Append ``data`` at the current offset; returns the bytes written."""
        ...

    async def truncate(self, size: int) -> None:
        """Restart the ingest from ``size`` (only 0 is supported).

        Raises InvalidArgument for any other size.
        """
        ...

    async def commit(
        self, size: int = 0, expected: str = "", labels: Mapping[str, str] | None = None
    ) -> str:
        """Publish the ingest as a blob and end the session; returns its digest.

        ``size`` (when > 0) and ``expected`` (when set) must match what was
        written.  The writer is finished afterwards whatever the outcome.

        Raises FailedPrecondition on a size or digest mismatch (nothing is
        committed; the ingest stays for a resume) or when the writer is already
        closed, AlreadyExists when a blob with that digest exists (the ingest is
        removed), InvalidArgument for oversized labels, NotFound when the ingest
        was aborted meanwhile.
        """
        ...

    async def close(self) -> None:
        """End the session, keeping the ingest for a later writer; idempotent."""
        ...


@runtime_checkable
class ContentStore(Protocol):
    async def info(self, digest: str) -> Info:
        """Raises InvalidArgument for a malformed digest, NotFound for an unknown blob."""
        ...

    async def update(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        """Change a blob's labels; returns the new Info.

        ``fieldpaths`` are ``labels`` (replace all) or ``labels.<key>`` (set one;
        an empty or missing value removes it); none means ``labels``.

        Raises InvalidArgument for a malformed digest, another field path or an
        oversized label, NotFound for an unknown blob.
        """
        ...

    def walk(self, filters: Sequence[str] = ()) -> AsyncIterator[Info]:
        """Blobs matching any of ``filters`` (containerd filter syntax on
        ``digest`` and ``labels.<key>``); all when none.

        Raises InvalidArgument for a filter that does not parse.
        """
        ...

    async def delete(self, digest: str) -> None:
        """Raises InvalidArgument for a malformed digest, NotFound for an unknown blob."""
        ...

    async def reader(self, digest: str) -> ReaderAt:
        """Raises InvalidArgument for a malformed digest, NotFound for an unknown blob."""
        ...

    async def status(self, ref: str) -> Status:
        """Raises NotFound when no ingest exists for ``ref``."""
        ...

    async def list_statuses(self, filters: Sequence[str] = ()) -> list[Status]:
        """Ingests whose fields (``ref``) match any of ``filters``.

        Raises InvalidArgument for a filter that does not parse.
        """
        ...

    async def writer(self, ref: str, total: int = 0, expected: str = "") -> Writer:
        """Begin or resume the ingest ``ref``.

        ``total`` is the expected size (0: unknown), ``expected`` the expected
        digest ("" : unknown).

        Raises InvalidArgument for an empty ref or a malformed digest,
        AlreadyExists when ``expected`` is already committed, Unavailable when
        another writer holds ``ref`` ("ref ... locked").
        """
        ...

    async def abort(self, ref: str) -> None:
        """Drop the ingest ``ref`` and its data.

        Raises NotFound when no ingest exists for ``ref``.
        """
        ...
