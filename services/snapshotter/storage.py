"""Transactional snapshot metadata for the local backends, on SQLite.

Modelled on containerd's ``snapshots/storage`` (``metastore.go`` and
``bolt.go``): a ``MetaStore`` hands out read or write transactions; a
transaction resolves keys to numeric ids, records kinds, parents, labels,
timestamps and the usage measured at commit, and refuses to remove a snapshot
that still has children.  The backends keep each snapshot's files in a
directory named after its id, so the directories that belong to no id
(``id_map``) are exactly what ``Cleanup`` may delete.

Ids only grow (AUTOINCREMENT), as bolt's bucket sequence: a removed
snapshot's id, whose directory may still await cleanup, is never handed out
again.  An id allocated inside a transaction that then rolled back *is* handed
out again; a backend must treat a directory already carrying a freshly
allocated id as a leftover of that failed attempt.

Everything here is synchronous.  Write transactions take turns (bolt allows
one writer as well) and belong in worker threads; read transactions run on
their own connection and never wait for a writer.  Commits are durable (WAL,
``synchronous=FULL``) before a backend deletes any directory, so a crash can
leave only directories without metadata, never metadata without its
directory.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from api import errdefs, filters
from api.goquote import go_quote
from services.snapshotter.snapshotter import Info, Kind, Usage

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    key       TEXT    NOT NULL UNIQUE,
    kind      INTEGER NOT NULL,
    parent_id INTEGER REFERENCES snapshots(id),
    created   INTEGER NOT NULL,
    updated   INTEGER NOT NULL,
    size      INTEGER NOT NULL DEFAULT 0,
    inodes    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS snapshots_by_parent ON snapshots(parent_id);
CREATE TABLE IF NOT EXISTS labels (
    snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    key         TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    PRIMARY KEY (snapshot_id, key)
) WITHOUT ROWID;
"""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


quote = go_quote


def _now_ns() -> int:
    return time.time_ns()


def _to_datetime(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1000)


@dataclass(frozen=True)
class Snapshot:
    """What a backend needs to build mounts: the id and the parents' ids, nearest first."""

    id: str
    kind: Kind
    parent_ids: tuple[str, ...] = ()


class Transaction:
    """One read or write transaction; obtained from ``MetaStore.transaction``."""

    def __init__(self, conn: sqlite3.Connection, writable: bool) -> None:
        self._conn = conn
        self.writable = writable
        self.on_commit: list[Callable[[], None]] = []

    # -- reads -----------------------------------------------------------

    def _row(self, key: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._conn.execute(
            "SELECT s.id, s.key, s.kind, s.created, s.updated, s.size, s.inodes,"
            " p.key AS parent FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id"
            " WHERE s.key = ?",
            (key,),
        ).fetchone()
        return row

    def _labels(self, snapshot_id: int) -> dict[str, str]:
        return dict(
            self._conn.execute(
                "SELECT key, value FROM labels WHERE snapshot_id = ? ORDER BY key",
                (snapshot_id,),
            ).fetchall()
        )

    def _info(self, row: sqlite3.Row, labels: dict[str, str]) -> Info:
        return Info(
            name=row["key"],
            kind=Kind(row["kind"]),
            parent=row["parent"] or "",
            labels=labels,
            created=_to_datetime(row["created"]),
            updated=_to_datetime(row["updated"]),
        )

    def get_info(self, key: str) -> tuple[str, Info, Usage]:
        """Id, info and recorded usage of ``key``; NotFound when absent."""
        row = self._row(key)
        if row is None:
            raise errdefs.NotFound("snapshot does not exist")
        info = self._info(row, self._labels(row["id"]))
        return str(row["id"]), info, Usage(size=row["size"], inodes=row["inodes"])

    def _parent_ids(self, parent_id: int) -> tuple[str, ...]:
        rows = self._conn.execute(
            "WITH RECURSIVE chain(id, parent_id, depth) AS ("
            " SELECT id, parent_id, 0 FROM snapshots WHERE id = ?"
            " UNION ALL SELECT s.id, s.parent_id, c.depth + 1"
            " FROM snapshots s JOIN chain c ON s.id = c.parent_id)"
            " SELECT id FROM chain ORDER BY depth",
            (parent_id,),
        ).fetchall()
        return tuple(str(r[0]) for r in rows)

    def get_snapshot(self, key: str) -> Snapshot:
        """The id and parent chain of an active or view snapshot.

        NotFound when absent; FailedPrecondition when ``key`` is committed.
        """
        # One statement: the snapshot (depth 0) and its ancestors, nearest first.
        rows = self._conn.execute(
            "WITH RECURSIVE chain(id, kind, parent_id, depth) AS ("
            " SELECT id, kind, parent_id, 0 FROM snapshots WHERE key = ?"
            " UNION ALL SELECT s.id, s.kind, s.parent_id, c.depth + 1"
            " FROM snapshots s JOIN chain c ON s.id = c.parent_id)"
            " SELECT id, kind FROM chain ORDER BY depth",
            (key,),
        ).fetchall()
        if not rows:
            raise errdefs.NotFound("snapshot does not exist")
        kind = Kind(rows[0][1])
        if kind not in (Kind.ACTIVE, Kind.VIEW):
            raise errdefs.FailedPrecondition(f"requested snapshot {key} not active or view")
        return Snapshot(
            id=str(rows[0][0]), kind=kind, parent_ids=tuple(str(r[0]) for r in rows[1:])
        )

    def walk_info(self, *exprs: str) -> list[Info]:
        """Every snapshot matching any of the filter expressions, ordered by key."""
        match = filters.parse_all(*exprs)  # InvalidArgument when one does not parse
        labels: dict[int, dict[str, str]] = {}
        for sid, k, v in self._conn.execute("SELECT snapshot_id, key, value FROM labels"):
            labels.setdefault(sid, {})[k] = v
        out = []
        for row in self._conn.execute(
            "SELECT s.id, s.key, s.kind, s.created, s.updated, s.size, s.inodes,"
            " p.key AS parent FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id"
            " ORDER BY s.key"
        ):
            info = self._info(row, labels.get(row["id"], {}))
            if match.match(filters.adapt_snapshot(info.kind, info.name, info.parent, info.labels)):
                out.append(info)
        return out

    def id_map(self) -> dict[str, str]:
        """Every id (as a directory name) mapped to its key."""
        return {str(i): k for i, k in self._conn.execute("SELECT id, key FROM snapshots")}

    def counts_by_kind(self) -> dict[Kind, int]:
        counts = dict.fromkeys((Kind.ACTIVE, Kind.VIEW, Kind.COMMITTED), 0)
        for kind, n in self._conn.execute("SELECT kind, count(*) FROM snapshots GROUP BY kind"):
            counts[Kind(kind)] = n
        return counts

    # -- writes ----------------------------------------------------------

    def _require_writable(self) -> None:
        if not self.writable:
            raise errdefs.FailedPrecondition("read-only transaction")

    def _write_labels(self, snapshot_id: int, labels: Mapping[str, str] | None) -> dict[str, str]:
        # Empty values mean "no label", as boltutil.WriteLabels drops them.
        kept = {k: v for k, v in (labels or {}).items() if v != ""}
        self._conn.execute("DELETE FROM labels WHERE snapshot_id = ?", (snapshot_id,))
        self._conn.executemany(
            "INSERT INTO labels (snapshot_id, key, value) VALUES (?, ?, ?)",
            [(snapshot_id, k, v) for k, v in kept.items()],
        )
        return kept

    def create_snapshot(
        self, kind: Kind, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> Snapshot:
        """Record a new active or view snapshot.

        InvalidArgument for an empty key, another kind or a parent that is not
        committed; NotFound for a missing parent; AlreadyExists when ``key``
        is taken.
        """
        self._require_writable()
        if not key:
            # containerd 1.6 fails here with bolt's "bucket name required" (Unknown).
            raise errdefs.InvalidArgument("key must not be empty")
        if kind not in (Kind.ACTIVE, Kind.VIEW):
            raise errdefs.InvalidArgument(
                f"snapshot type {kind} invalid;"
                " only snapshots of type Active or View can be created"
            )
        parent_id: int | None = None
        if parent:
            prow = self._conn.execute(
                "SELECT id, kind FROM snapshots WHERE key = ?", (parent,)
            ).fetchone()
            if prow is None:
                raise errdefs.NotFound(f"missing parent {quote(parent)} bucket")
            if prow["kind"] != Kind.COMMITTED:
                raise errdefs.InvalidArgument(f"parent {quote(parent)} is not committed snapshot")
            parent_id = prow["id"]
        now = _now_ns()
        try:
            cur = self._conn.execute(
                "INSERT INTO snapshots (key, kind, parent_id, created, updated)"
                " VALUES (?, ?, ?, ?, ?)",
                (key, int(kind), parent_id, now, now),
            )
        except sqlite3.IntegrityError:
            raise errdefs.AlreadyExists(f"snapshot {key}") from None
        sid = cur.lastrowid
        assert sid is not None
        self._write_labels(sid, labels)
        parents = () if parent_id is None else self._parent_ids(parent_id)
        return Snapshot(id=str(sid), kind=kind, parent_ids=parents)

    def commit_active(
        self, key: str, name: str, usage: Usage, labels: Mapping[str, str] | None = None
    ) -> str:
        """Turn the active ``key`` into the committed ``name``; returns the (unchanged) id.

        The checks run in containerd's order: AlreadyExists when ``name`` is
        taken, NotFound when ``key`` is missing, FailedPrecondition when it is
        not active; before them InvalidArgument for an empty ``name``.  Labels
        are replaced, not inherited; timestamps restart.
        """
        self._require_writable()
        if not name:
            raise errdefs.InvalidArgument("name must not be empty")
        if self._conn.execute("SELECT 1 FROM snapshots WHERE key = ?", (name,)).fetchone():
            raise errdefs.AlreadyExists(f"committed snapshot {name}")
        row = self._conn.execute("SELECT id, kind FROM snapshots WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise errdefs.NotFound(f"failed to get active snapshot {quote(key)}")
        if row["kind"] != Kind.ACTIVE:
            raise errdefs.FailedPrecondition(f"snapshot {quote(key)} is not active")
        now = _now_ns()
        self._conn.execute(
            "UPDATE snapshots SET key = ?, kind = ?, created = ?, updated = ?, size = ?, inodes = ?"
            " WHERE id = ?",
            (name, int(Kind.COMMITTED), now, now, usage.size, usage.inodes, row["id"]),
        )
        self._write_labels(row["id"], labels)
        return str(row["id"])

    def remove(self, key: str) -> tuple[str, Kind]:
        """Delete ``key``'s record; returns its id and kind.

        NotFound when absent; FailedPrecondition when it has children.
        """
        self._require_writable()
        row = self._conn.execute("SELECT id, kind FROM snapshots WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise errdefs.NotFound(f"snapshot {key}")
        child = self._conn.execute(
            "SELECT 1 FROM snapshots WHERE parent_id = ? LIMIT 1", (row["id"],)
        ).fetchone()
        if child is not None:
            raise errdefs.FailedPrecondition("cannot remove snapshot with child")
        self._conn.execute("DELETE FROM snapshots WHERE id = ?", (row["id"],))
        return str(row["id"]), Kind(row["kind"])

    def update_info(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        """Apply ``info``'s labels as ``Snapshotter.update`` describes; returns the result."""
        self._require_writable()
        row = self._row(info.name)
        if row is None:
            raise errdefs.NotFound("snapshot does not exist")
        labels = self._labels(row["id"])
        if fieldpaths:
            for path in fieldpaths:
                if path.startswith("labels."):
                    label = path[len("labels.") :]
                    labels[label] = info.labels.get(label, "")
                elif path == "labels":
                    labels = dict(info.labels)
                else:
                    raise errdefs.InvalidArgument(
                        f"cannot update {quote(path)} field on snapshot {quote(info.name)}"
                    )
        else:
            labels = dict(info.labels)
        now = _now_ns()
        self._conn.execute("UPDATE snapshots SET updated = ? WHERE id = ?", (now, row["id"]))
        kept = self._write_labels(row["id"], labels)
        return Info(
            name=info.name,
            kind=Kind(row["kind"]),
            parent=row["parent"] or "",
            labels=kept,
            created=_to_datetime(row["created"]),
            updated=_to_datetime(now),
        )


class MetaStore:
    """The metadata database of one snapshotter root (a single SQLite file).

    Writers take turns on one connection; each reading thread has a
    connection of its own, so in WAL mode a read never waits, neither for a
    write in progress (it sees the last commit) nor for another reader.  Read
    transactions are short enough to run on the event loop's thread.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._write_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _open_writer(self) -> sqlite3.Connection:
        conn = self._connect()
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise errdefs.FailedPrecondition(
                    f"{self.path}: metadata schema {version} is newer than this program's"
                    f" ({SCHEMA_VERSION})"
                )
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _ensure_open(self) -> None:
        # Called with the write lock held: the writer creates the schema first.
        if self._writer is None:
            self._writer = self._open_writer()

    @contextmanager
    def transaction(self, writable: bool = False) -> Iterator[Transaction]:
        """A transaction committed when the block ends, rolled back if it raises.

        Callables appended to ``tx.on_commit`` run after a successful commit,
        still inside the write lock.
        """
        if not writable:
            reader = self._reader()
            reader.execute("BEGIN")
            try:
                yield Transaction(reader, False)
            finally:
                reader.execute("ROLLBACK")
            return
        with self._write_lock:
            self._ensure_open()
            conn = self._writer
            assert conn is not None
            conn.execute("BEGIN IMMEDIATE")
            tx = Transaction(conn, True)
            try:
                yield tx
                # A failed COMMIT leaves the transaction open; roll it back
                # or every later write on this connection fails.
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            for hook in tx.on_commit:
                hook()

    def _reader(self) -> sqlite3.Connection:
        reader: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if reader is None:
            with self._write_lock:
                self._ensure_open()
            reader = self._connect()
            with self._readers_lock:
                self._readers.append(reader)
            self._local.conn = reader
        return reader

    def close(self) -> None:
        with self._write_lock, self._readers_lock:
            for conn in [*self._readers, self._writer]:
                if conn is not None:
                    conn.close()
            self._readers.clear()
            self._writer = None
            # Threads that read again reconnect.
            self._local = threading.local()
