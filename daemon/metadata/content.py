"""Content as each namespace sees it, over a shared content backend
(containerd's metadata/content.go).

The backend (the local store or the content plugin through its proxy
client) holds every blob once.  The metadata keeps, per namespace, which
blobs that namespace has committed (with its own labels and times) and its
ingests, so a blob written in one namespace is invisible in another until
written there too.  Writing a blob the backend already holds (another
namespace committed it) with its expected digest costs nothing: the ingest
only records the digest and commits at once ("shared" policy, containerd's
default).

Backend refs are namespaced (``<ns>/<seq>/<ref>``) so the same ref in two
namespaces never names one ingest.  Ingests that no lease holds expire after
a day; the collector drops them and aborts backend ingests nothing records.

On a cluster, ``remote`` (``daemon.metadata.remote``) answers for the blobs
of a namespace that other nodes hold: Info and Update see them, a Write of
one is AlreadyExists, and reading one fetches it here first, records it and
serves it from the backend.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

from api import errdefs, filters
from daemon.metadata import records
from daemon.metadata.db import MetadataDB, ensure_namespace
from daemon.metadata.leases import CONTENT, INGESTS, add_to_lease, remove_from_lease
from daemon.metadata.locks import RWLock
from daemon.metadata.postedwriter import PostedWriter
from daemon.metadata.readahead import ReadAhead
from daemon.metadata.remote import RemoteContent
from daemon.metadata.store import BLOBS, NAMESPACES, Tx
from daemon.metadata.store import INGESTS as INGESTS_TABLE
from daemon.metadata.validation import apply_label_paths, q, validate_digest, validate_labels
from services.content.proxy import ProxyContentStore
from services.content.store import (
    ContentStore,
    Data,
    Info,
    NsTime,
    ReaderAt,
    Status,
    Writer,
    ns_of,
)

log = logging.getLogger(__name__)

INGEST_EXPIRY_NS = 24 * 3600 * 10**9
# Ingests whose last answered write time is remembered (a few bytes each).
ACKED_KEPT = 4096
# Namespaces looked through for another one's record of a blob being
# written; with more, the backend is asked whether it holds the blob.
SHARE_SCAN_LIMIT = 64


def blob_info(blob: records.Blob) -> Info:
    """A namespace's record of a blob as the content store's ``Info``."""
    return Info(
        blob.digest, blob.size, NsTime.of(blob.created_at), NsTime.of(blob.updated_at), blob.labels
    )


def _not_found(digest: str) -> errdefs.NotFound:
    return errdefs.NotFound(f"content digest {digest}")


def _relabel(labels: Mapping[str, str], info: Info, paths: Sequence[str]) -> Mapping[str, str]:
    for path in paths or ["labels"]:
        applied = apply_label_paths(labels, info.labels, path)
        if applied is None:
            raise errdefs.InvalidArgument(
                f"cannot update {q(path)} field on content info {q(info.digest)}"
            )
        labels = applied
    validate_labels(labels, "info.Labels")
    return labels


class NamespacedContent:
    """The namespaced content store; every call names its namespace (and lease)."""

    def __init__(self, db: MetadataDB, backend: ContentStore, *, shared: bool = True) -> None:
        self.db = db
        self.backend = backend
        self.shared = shared
        self.lock = RWLock()
        # Set by the peer plugin on a cluster.
        self.remote: RemoteContent | None = None
        self.on_client_write: Callable[[int], None] | None = None
        # Digests being fetched from other nodes: the collector keeps their
        # backend ingest and blob until they are recorded here.
        self._fetching: Counter[str] = Counter()
        # Backend ingests being written here, by backend ref.
        self._writing: dict[str, PostedWriter] = {}
        # When this daemon answered the last write of a backend ingest (ns),
        # the most recent ACKED_KEPT of them (see _as_answered).
        self._acked: OrderedDict[str, int] = OrderedDict()
        self.readahead = ReadAhead(backend)

    async def record(self, ns: str, digest: str) -> records.Blob | None:
        """This node's record of a blob in ``ns``; None when it has none (a
        malformed digest never has one, so this does not validate)."""
        return await self.db.get(BLOBS, ns, digest)

    async def info(self, ns: str, digest: str) -> Info:
        """Raises InvalidArgument for a malformed digest, NotFound."""
        validate_digest(digest)
        blob = await self.db.get(BLOBS, ns, digest)
        if blob is None:
            remote = await self.remote.info(ns, digest) if self.remote is not None else None
            if remote is None:
                raise _not_found(digest)
            return remote
        return blob_info(blob)

    async def update(self, ns: str, info: Info, paths: Sequence[str] = ()) -> Info:
        """Change this namespace's labels of a blob (``labels``, ``labels.<key>``).

        Raises InvalidArgument (digest, path, label), NotFound.
        """
        validate_digest(info.digest)

        def txn(tx: Tx) -> records.Blob | None:
            blob = tx.get(BLOBS, ns, info.digest)
            if blob is None:
                return None
            labels = _relabel(blob.labels, info, paths)
            updated = dataclasses.replace(blob, labels=labels, updated_at=records.now_ns())
            tx.put(BLOBS, updated)
            return updated

        async with self.lock.shared():
            updated = await self.db.update(txn)
        if updated is not None:
            return blob_info(updated)
        if self.remote is not None:
            remote = await self.remote.update(
                ns, info.digest, lambda labels: _relabel(labels, info, paths)
            )
            if remote is not None:
                return remote
        raise _not_found(info.digest)

    async def walk(self, ns: str, exprs: Sequence[str] = ()) -> builtins.list[Info]:
        """Raises InvalidArgument for a filter that does not parse."""
        flt = await filters.parse_all_async(*exprs)
        blobs = await self.db.scan(BLOBS, ns)
        found = await filters.select(
            flt, blobs, lambda b: filters.adapt_content_info(b.digest, b.labels)
        )
        return [blob_info(b) for b in found]

    async def delete(self, ns: str, digest: str, lease: str = "") -> None:
        """Forget the blob in ``ns``; the collector frees the bytes when no
        namespace has it any more.  Raises InvalidArgument, NotFound."""
        validate_digest(digest)

        def txn(tx: Tx) -> None:
            if not tx.delete(BLOBS, ns, digest):
                raise _not_found(digest)
            remove_from_lease(tx, ns, lease, CONTENT, digest)

        async with self.lock.shared():
            await self.db.update(txn, dirty=True, content=True)

    async def reader(self, ns: str, digest: str, lease: str = "") -> ReaderAt:
        """Raises InvalidArgument, NotFound (also when only another namespace has it).

        A blob only other nodes hold is fetched and recorded first (held by
        ``lease``); that fails with Unavailable or DataLoss as ``fetch`` does.
        Small reads are served through the read-ahead windows; the size is the
        one the namespace recorded at commit (the bytes are immutable).
        """
        validate_digest(digest)
        blob = await self.db.get(BLOBS, ns, digest)
        if blob is None:
            if self.remote is None:
                raise _not_found(digest)
            await self._fetch_remote(self.remote, ns, digest, lease)
            blob = await self.db.get(BLOBS, ns, digest)
            if blob is None:
                raise _not_found(digest)
        return self.readahead.reader(digest, blob.size)

    async def _fetch_remote(self, remote: RemoteContent, ns: str, digest: str, lease: str) -> None:
        info = await remote.info(ns, digest)
        if info is None:
            raise _not_found(digest)
        # Counted under the lock, so a collection is either over or sees it.
        async with self.lock.shared():
            self._fetching[digest] += 1
        try:
            await remote.fetch(ns, digest, info.size)
            # The labels as they are now: they may have changed during the transfer.
            info = await remote.info(ns, digest) or info
            blob = records.Blob(
                ns,
                digest,
                info.size,
                dict(info.labels),
                ns_of(info.created_at),
                ns_of(info.updated_at),
            )

            def record(tx: Tx) -> None:
                add_to_lease(tx, ns, lease, CONTENT, digest)
                if tx.get(BLOBS, ns, digest) is None:
                    ensure_namespace(tx, ns)
                    tx.put(BLOBS, blob)

            async with self.lock.shared():
                await self.db.update(record)
        finally:
            self._fetching[digest] -= 1
            if self._fetching[digest] <= 0:
                del self._fetching[digest]
        log.info("namespace %s: content %s fetched from the cluster", ns, digest)
        await remote.fetched(ns, digest)

    async def status(self, ns: str, ref: str) -> Status:
        """Raises NotFound when ``ns`` has no ingest ``ref``."""
        ingest = await self.db.get(INGESTS_TABLE, ns, ref)
        if ingest is None:
            raise errdefs.NotFound(f"reference {ref}")
        st = await self._backend_status(ingest)
        return dataclasses.replace(st, ref=ref)

    async def _backend_status(self, ingest: records.Ingest) -> Status:
        """The backend's status of ``ingest``, once a write this daemon
        answered already has reached it (as containerd's Status sees the
        bytes of every answered write), with this daemon's times."""
        bref = ingest.backend_ref
        writing = self._writing.get(bref)
        if writing is not None:
            await writing.settled()
        return self._as_answered(ingest, await self.backend.status(bref))

    def _answered(self, bref: str, ns: int) -> None:
        acked = self._acked
        acked[bref] = ns
        acked.move_to_end(bref)
        if len(acked) > ACKED_KEPT:
            acked.popitem(last=False)

    def _as_answered(self, ingest: records.Ingest, st: Status) -> Status:
        """The backend's status ``st`` of ``ingest`` with this daemon's times.

        The ingest started when this daemon recorded it, and was last
        updated when this daemon answered its last write.  Writes are
        answered once handed to the plugin, and a new ingest is opened there
        behind the answer, so the plugin takes its own times after the
        client has its answers; containerd's status times lie within the
        client's calls, and so do ours.  Bytes written before this daemon
        started (no write of them answered here) keep the plugin's time.
        """
        started = ingest.started_at
        acked = self._acked.get(ingest.backend_ref)
        if acked is not None and acked >= started:
            updated = acked
        elif st.offset > 0:
            updated = max(ns_of(st.updated_at), started)
        else:
            updated = started
        return dataclasses.replace(st, started_at=NsTime.of(started), updated_at=NsTime.of(updated))

    def _backend_up(self) -> bool:
        backend = self.backend
        return not isinstance(backend, ProxyContentStore) or backend.up

    def _posted(
        self,
        bref: str,
        inner: Writer | None = None,
        total: int = 0,
        on_failed: Callable[[], Awaitable[None]] | None = None,
    ) -> PostedWriter:
        """``inner`` posted; without one, the new ingest ``bref`` opened on the
        backend behind the writer's answers (``on_failed`` runs if it is not)."""

        def finished() -> None:
            if self._writing.get(bref) is w:
                del self._writing[bref]

        if inner is not None:
            w = PostedWriter(inner, finished)
        else:
            backend = self.backend
            opening = (
                backend.start_writer(bref, total)
                if isinstance(backend, ProxyContentStore)
                else backend.writer(bref, total)
            )
            w = PostedWriter.opening(bref, opening, finished, on_failed)
        self._writing[bref] = w
        return w

    async def list_statuses(self, ns: str, exprs: Sequence[str] = ()) -> builtins.list[Status]:
        """Raises InvalidArgument for a filter that does not parse."""
        flt = await filters.parse_all_async(*exprs)
        ingests = await self.db.scan(INGESTS_TABLE, ns)
        out = []
        for ingest in ingests:
            try:
                st = await self._backend_status(ingest)
            except errdefs.NotFound:
                continue
            out.append(dataclasses.replace(st, ref=ingest.ref))
        return await filters.select(flt, out, lambda st: filters.adapt_content_status(st.ref))

    async def abort(self, ns: str, ref: str, lease: str = "") -> None:
        """Drop the ingest ``ref`` of ``ns``.  Raises NotFound."""

        def txn(tx: Tx) -> records.Ingest:
            ingest = tx.get(INGESTS_TABLE, ns, ref)
            if ingest is None:
                raise errdefs.NotFound(f"reference {ref}")
            tx.delete(INGESTS_TABLE, ns, ref)
            remove_from_lease(tx, ns, lease, INGESTS, ref)
            return ingest

        async with self.lock.shared():
            ingest = await self.db.update(txn)
            held = self._writing.get(ingest.backend_ref)
            if held is not None:
                await held.opened()  # aborted after its opening, not before
            if not ingest.expected:
                # A shared ingest has no backend ingest of its own.
                with contextlib.suppress(errdefs.NotFound):
                    await self.backend.abort(ingest.backend_ref)

    async def writer(
        self, ns: str, ref: str, total: int = 0, expected: str = "", lease: str = ""
    ) -> NamespacedWriter:
        """Begin or resume the ingest ``ref`` of ``ns``.

        Raises InvalidArgument (empty ref, digest), AlreadyExists when ``ns``
        already has ``expected`` (it is added to ``lease`` first), NotFound
        when ``lease`` does not exist, Unavailable when the ref is locked.
        """
        if not ref:
            raise errdefs.InvalidArgument("ref must not be empty")
        if expected:
            validate_digest(expected)
        elsewhere = False
        async with self.lock.shared():
            if expected:

                def hold(tx: Tx) -> bool:
                    if tx.get(BLOBS, ns, expected) is None:
                        return False
                    # Hold it for the caller's lease, so that removing other
                    # references during the lease cannot free it.
                    add_to_lease(tx, ns, lease, CONTENT, expected)
                    return True

                # Looked up first (no write transaction, no thread hop): the
                # blob is usually new.
                present, elsewhere = await self.db.view(
                    lambda tx: (
                        tx.get(BLOBS, ns, expected) is not None,
                        self.shared and _recorded_elsewhere(tx, ns, expected),
                    )
                )
                if (present and await self.db.update(hold)) or await self._remote_has(
                    ns, expected, lease
                ):
                    raise errdefs.AlreadyExists(f"content {expected}")

            # Taken outside the transaction: on etcd a counter every begin
            # wrote would make concurrent ingests conflict with each other.
            # A resumed ingest leaves its number unused (numbers only have
            # to be new).
            fresh = f"{ns}/{await self.db.sequence()}/{ref}"

            def begin(tx: Tx) -> tuple[records.Ingest, bool]:
                ensure_namespace(tx, ns)
                current = tx.get(INGESTS_TABLE, ns, ref)
                now = records.now_ns()
                bref = current.backend_ref if current else fresh
                add_to_lease(tx, ns, lease, INGESTS, ref)
                ingest = records.Ingest(
                    ns,
                    ref,
                    bref,
                    total=total,
                    expire_at=0 if lease else now + INGEST_EXPIRY_NS,
                    started_at=current.started_at if current else now,
                )
                tx.put(INGESTS_TABLE, ingest)
                return ingest, current is None

            ingest, created = await self.db.update(begin)
            if created and not (expected and elsewhere) and self._backend_up():
                # New, and no namespace has the blob to share: the backend's
                # ingest is opened behind the answer (see PostedWriter).
                # A blob the backend holds all the same is written again and
                # its commit answers AlreadyExists, as with any ingest.  (A
                # plugin known to be down is asked, and fails the call now.)
                bref = ingest.backend_ref

                async def forget() -> None:
                    # Not opened after all: the record goes, as it would
                    # had the opening been waited for.
                    def txn(tx: Tx) -> None:
                        now = tx.get(INGESTS_TABLE, ns, ref)
                        if now is not None and now.backend_ref == bref:
                            _drop_ingest(tx, ns, ref, lease)

                    await self.db.update(txn)

                writer = self._posted(bref, total=total, on_failed=forget)
                started = NsTime.of(ingest.started_at)
                return NamespacedWriter(
                    self, ingest, lease, writer, Status(ref, 0, total, started, started)
                )
            held = self._writing.get(ingest.backend_ref)
            if held is not None:
                # Another writer of ours may still be opening it: the
                # backend's lock decides between them once it holds it.
                await held.opened()
            backend_writer: Writer | None = None
            try:
                # Not the expected digest: the caller must prove the bytes
                # before the blob shows in this namespace.  Naming it to the
                # backend only asks whether it holds the blob already (it
                # answers AlreadyExists), without a round trip of its own.
                probe = expected if self.shared else ""
                try:
                    backend_writer = self._posted(
                        ingest.backend_ref,
                        await self.backend.writer(ingest.backend_ref, total, probe),
                    )
                except errdefs.AlreadyExists:
                    if not probe:
                        raise
                    ingest = await self._share(ingest, expected, total)
                    if not ingest.expected:
                        backend_writer = self._posted(
                            ingest.backend_ref, await self.backend.writer(ingest.backend_ref, total)
                        )
            except BaseException:
                if created:
                    await self.db.update(lambda tx: _drop_ingest(tx, ns, ref, lease))
                raise
        return NamespacedWriter(self, ingest, lease, backend_writer)

    async def _share(self, ingest: records.Ingest, expected: str, total: int) -> records.Ingest:
        """The ingest, made shared when the backend holds ``expected`` with
        ``total`` bytes (or any, when ``total`` is 0): another namespace
        committed these bytes, so writing them costs nothing ("shared" policy)."""
        try:
            binfo = await self.backend.info(expected)
        except errdefs.NotFound:
            return ingest  # removed meanwhile: write it after all
        if total not in (0, binfo.size):
            return ingest
        shared = dataclasses.replace(ingest, expected=expected, total=binfo.size)

        def record(tx: Tx) -> None:
            tx.put(INGESTS_TABLE, shared)

        await self.db.update(record)
        return shared

    async def _remote_has(self, ns: str, digest: str, lease: str) -> bool:
        """Another node holds ``digest`` in ``ns`` (then ``lease`` holds it here too)."""
        if self.remote is None or await self.remote.info(ns, digest) is None:
            return False
        await self.db.update(lambda tx: add_to_lease(tx, ns, lease, CONTENT, digest))
        return True

    async def garbage_collect(self) -> int:
        """Delete backend blobs no namespace has and abort backend ingests no
        namespace records; returns how many objects went."""
        async with self.lock.exclusive():

            def seen(tx: Tx) -> tuple[set[str], set[str]]:
                blobs = {b.digest for b in tx.scan(BLOBS)}
                refs = set()
                for ingest in tx.scan(INGESTS_TABLE):
                    refs.add(ingest.backend_ref)
                    if ingest.expected:
                        # The expected blob may belong to another namespace
                        # that removes it meanwhile: the ingest keeps it.
                        blobs.add(ingest.expected)
                return blobs, refs

            blobs, refs = await self.db.view(seen)
            if self.remote is not None:
                blobs.update(self._fetching)
                refs.update(self.remote.fetch_ref(d) for d in self._fetching)
            removed = 0
            doomed = [info.digest async for info in self.backend.walk() if info.digest not in blobs]
            for digest in doomed:
                with contextlib.suppress(errdefs.NotFound):
                    await self.backend.delete(digest)
                    removed += 1
                    log.debug("gc: removed content %s", digest)
            for st in await self.backend.list_statuses():
                if st.ref not in refs:
                    with contextlib.suppress(errdefs.NotFound):
                        await self.backend.abort(st.ref)
                        removed += 1
                        log.debug("gc: aborted ingest %s", st.ref)
            return removed


def _recorded_elsewhere(tx: Tx, ns: str, digest: str) -> bool:
    """Whether a namespace other than ``ns`` records ``digest`` (true too
    past SHARE_SCAN_LIMIT namespaces: then the backend is asked)."""
    names = tx.scan(NAMESPACES)
    if len(names) > SHARE_SCAN_LIMIT:
        return True
    return any(n.name != ns and tx.get(BLOBS, n.name, digest) is not None for n in names)


def _drop_ingest(tx: Tx, ns: str, ref: str, lease: str) -> None:
    tx.delete(INGESTS_TABLE, ns, ref)
    remove_from_lease(tx, ns, lease, INGESTS, ref)


class NamespacedWriter:
    """The writer of one namespace's ingest; ``Writer`` protocol."""

    def __init__(
        self,
        content: NamespacedContent,
        ingest: records.Ingest,
        lease: str,
        backend_writer: Writer | None,
        status: Status | None = None,
    ) -> None:
        self._content = content
        self._ingest = ingest
        self._lease = lease
        self._w = backend_writer
        self._committed = ""
        # The backend writer's status, kept up to date by our own writes: the
        # Write stream asks for it before every message, and only this
        # writer changes the ingest (one writer per ref), so a round trip
        # to the plugin per message would only repeat what we know.
        self._status = status

    @property
    def ref(self) -> str:
        return self._ingest.ref

    async def status(self) -> Status:
        if self._w is not None:
            if self._status is None:
                st = await self._w.status()
                st = self._content._as_answered(self._ingest, st)
                self._status = dataclasses.replace(st, ref=self.ref)
            return self._status
        i = self._ingest
        started = NsTime.of(i.started_at)
        return Status(self.ref, i.total, i.total, started, started, i.expected)

    def digest(self) -> str:
        if self._w is not None:
            return self._w.digest()
        return self._committed or self._ingest.expected

    async def _unshare(self, size: int) -> Writer:
        """Turn a shared ingest into a real one, copying ``size`` bytes of the
        expected blob (the caller is rewriting it)."""
        backend = self._content.backend
        bref = self._ingest.backend_ref
        w: Writer = self._content._posted(bref, await backend.writer(bref, self._ingest.total))
        try:
            if size > 0:
                async with await backend.reader(self._ingest.expected) as ra:
                    async for chunk in ra.chunks(0, size):
                        await w.write(chunk)
        except BaseException:
            await w.close()
            raise
        self._w = w
        self._status = None
        return w

    async def write(self, data: Data) -> int:
        w = self._w
        if w is None:
            if not data:
                return 0
            w = await self._unshare(self._ingest.total)
        try:
            n = await w.write(data)
        except BaseException:
            self._status = None
            raise
        content = self._content
        if content.on_client_write is not None:
            content.on_client_write(n)
        now = time.time_ns()
        content._answered(self._ingest.backend_ref, now)
        st = self._status
        if st is not None:
            self._status = dataclasses.replace(st, offset=st.offset + n, updated_at=NsTime.of(now))
        return n

    async def truncate(self, size: int) -> None:
        self._status = None
        if self._w is not None:
            await self._w.truncate(size)
        else:
            await self._unshare(size)

    async def commit(
        self, size: int = 0, expected: str = "", labels: Mapping[str, str] | None = None
    ) -> str:
        """Commit into the namespace; ``Writer.commit``'s errors.  AlreadyExists
        when the namespace already has the blob (the ingest is dropped);
        FailedPrecondition when the bytes written do not hash to ``expected``,
        even if the backend holds a blob with that digest (the ingest stays);
        DataLoss when the backend does not hold the committed blob afterwards."""
        ingest = self._ingest
        content = self._content
        try:
            validate_labels(labels, "info.Labels")
        except errdefs.InvalidArgument:
            await self.close()
            raise
        async with content.lock.shared():
            if self._w is None:
                if size and size != ingest.total:
                    raise errdefs.FailedPrecondition(
                        f"{q(self.ref)} failed size validation: {ingest.total} != {size}"
                    )
                if expected and expected != ingest.expected:
                    raise errdefs.FailedPrecondition(f"{q(self.ref)} unexpected digest")
                actual, size = ingest.expected, ingest.total
            else:
                w = self._w
                # Our writes keep the status (and a proxy writer's digest,
                # carried by every answer) current: no round trip needed.
                st = await self.status()
                if size and size != st.offset:
                    await self.close()
                    raise errdefs.FailedPrecondition(
                        f"{q(self.ref)} failed size validation: {st.offset} != {size}"
                    )
                size = st.offset
                written = w.digest()
                if expected and written and written != expected:
                    # Checked here, not left to the backend: a content
                    # plugin answers AlreadyExists for an expected digest it
                    # holds without looking at the bytes (containerd's
                    # contentserver does), which would record these bytes
                    # under a digest that is not theirs.  The backend ingest
                    # stays for a retry, as containerd's local writer keeps it.
                    await self.close()
                    raise errdefs.FailedPrecondition(
                        f"unexpected commit digest {written}, expected {expected}"
                    )
                try:
                    actual = await w.commit(size, expected)
                except errdefs.AlreadyExists:
                    # The backend holds these bytes already (another
                    # namespace committed them first).
                    actual = written or expected
                    if not actual:
                        raise
                finally:
                    self._w = None
                    self._status = None
            blob = records.Blob(
                ingest.namespace, actual, size, dict(labels or {}), records.now_ns(), 0
            )
            blob = dataclasses.replace(blob, updated_at=blob.created_at)
            lease = self._lease
            ns = ingest.namespace

            def txn(tx: Tx) -> bool:
                tx.delete(INGESTS_TABLE, ns, ingest.ref)
                remove_from_lease(tx, ns, lease, INGESTS, ingest.ref)
                add_to_lease(tx, ns, lease, CONTENT, actual)
                if tx.get(BLOBS, ns, actual) is not None:
                    return False
                ensure_namespace(tx, ns)
                tx.put(BLOBS, blob)
                return True

            def unrecord(tx: Tx) -> None:
                tx.delete(BLOBS, ns, actual)
                remove_from_lease(tx, ns, lease, CONTENT, actual)

            # Recorded while the backend is asked whether it holds the blob
            # (so the answer costs no wait of its own), and taken back when
            # it does not: then the record shows for as long as the question
            # took, of bytes that were lost at that moment anyway.
            recorded = asyncio.ensure_future(content.db.update(txn))
            try:
                await self._check_backend_has(actual, size)
            except errdefs.DataLoss as lost:
                try:
                    put = await recorded
                except Exception as e:
                    raise lost from e
                if put:
                    await content.db.update(unrecord, dirty=True, content=True)
                raise
            except BaseException:
                # The backend committed it: the record stands, and is made
                # before the lock lets the collector look.  Its own error,
                # if any, comes second to this one.
                await asyncio.wait({recorded})
                if not recorded.cancelled():
                    recorded.exception()
                raise
            self._committed = actual
            if not await recorded:
                raise errdefs.AlreadyExists(f"content {actual}")
            return actual

    async def close(self) -> None:
        self._status = None
        if self._w is not None:
            w, self._w = self._w, None
            await w.close()

    async def _check_backend_has(self, digest: str, size: int) -> None:
        """DataLoss unless the backend holds ``digest`` with ``size`` bytes: a
        namespace never records a blob it could not read.  (The collector
        takes the lock exclusively, so it cannot remove the blob meanwhile.)"""
        try:
            info = await self._content.backend.info(digest)
        except errdefs.NotFound:
            raise errdefs.DataLoss(
                f"{q(self.ref)}: content {digest} is missing from the content store after commit"
            ) from None
        if info.size != size:
            raise errdefs.DataLoss(
                f"{q(self.ref)}: content {digest} has {info.size} bytes in the content store,"
                f" {size} were committed"
            )


class NamespaceView:
    """One namespace (and lease) of a ``NamespacedContent``, as a plain
    ``ContentStore``: what the Content servicer and in-process callers use."""

    def __init__(self, content: NamespacedContent, namespace: str, lease: str = "") -> None:
        self.content = content
        self.namespace = namespace
        self.lease = lease

    async def info(self, digest: str) -> Info:
        return await self.content.info(self.namespace, digest)

    async def update(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        return await self.content.update(self.namespace, info, fieldpaths)

    async def walk(self, filters: Sequence[str] = ()) -> AsyncIterator[Info]:
        for info in await self.content.walk(self.namespace, filters):
            yield info

    async def delete(self, digest: str) -> None:
        await self.content.delete(self.namespace, digest, self.lease)

    async def reader(self, digest: str) -> ReaderAt:
        return await self.content.reader(self.namespace, digest, self.lease)

    async def status(self, ref: str) -> Status:
        return await self.content.status(self.namespace, ref)

    async def list_statuses(self, filters: Sequence[str] = ()) -> builtins.list[Status]:
        return await self.content.list_statuses(self.namespace, filters)

    async def writer(self, ref: str, total: int = 0, expected: str = "") -> NamespacedWriter:
        return await self.content.writer(self.namespace, ref, total, expected, self.lease)

    async def abort(self, ref: str) -> None:
        await self.content.abort(self.namespace, ref, self.lease)
