"""The SQLite metadata store (the default backend of ``MetadataStore``).

One table per record type (``daemon.metadata.store.TABLES``), keyed by the
record's key fields, plus ``meta`` for the schema version and the sequence.
The database runs in WAL mode with ``synchronous=FULL``: a transaction that
returned is on disk, and a crash (kill -9, power loss) leaves the database
as of the last committed transaction — never half of one.

Writes are serialised on one thread with one connection (SQLite allows one
writer anyway), so a commit's fsync never holds up the event loop.  Reads run
on the caller's thread (the event loop) with a connection of its own and see
the last committed state: a read is a few index lookups in the page cache,
cheaper than the hand-off to a thread and back that it used to take (WAL
mode never makes a reader wait for the writer).

A read of one record by its key (``get``: what every Get and Info asks), or
of a short list (``scan``: a namespace's few images), is answered from a
small cache of decoded records while nothing was written since it was read.
Every write transaction is counted twice, when it begins and when it ends,
so a count that is even and unchanged proves that no write began since (see
``SqliteStore._keep``).  All writes of the database go through this store's
writer thread: nothing else changes it under the cache.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from api import errdefs
from daemon.metadata import codec
from daemon.metadata.store import TABLES, R, Table

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION = 1

# Records ``SqliteStore.get`` keeps: enough for the objects a client polls,
# a few hundred KB at most.
POINT_CACHE = 256
# Scans ``SqliteStore.scan`` keeps, each of at most SCAN_KEPT records: the
# lists of a namespace's few objects, as ``ctr ... ls`` asks for them.
SCANS_KEPT = 16
SCAN_KEPT = 32

_NOTHING: Any = object()


class _Kept:
    """Values read at a count of writes, up to ``bound`` of them (the oldest
    goes first); one is given back only at the count it was read at."""

    __slots__ = ("bound", "values")

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self.values: dict[tuple[str, tuple[str, ...]], tuple[int, Any]] = {}

    def get(self, at: tuple[str, tuple[str, ...]], writes: int) -> Any:
        """The value kept at ``at`` if read at ``writes`` (even), else _NOTHING."""
        kept = self.values.get(at)
        if kept is None or kept[0] != writes or writes & 1:
            return _NOTHING
        return kept[1]

    def put(self, at: tuple[str, tuple[str, ...]], writes: int, value: Any) -> None:
        values = self.values
        if at not in values and len(values) >= self.bound:
            del values[next(iter(values))]
        values[at] = (writes, value)

    def clear(self) -> None:
        self.values.clear()

    def __len__(self) -> int:
        return len(self.values)


def _ddl(table: Table[Any]) -> str:
    cols = ", ".join(f"{c.name} {c.sql_type}" for c in codec.columns(table.record))
    return (
        f"CREATE TABLE IF NOT EXISTS {table.name} ({cols}, "
        f"PRIMARY KEY ({', '.join(table.key)})) WITHOUT ROWID"
    )


@functools.cache
def _where(table: Table[Any], n: int) -> str:
    if n > len(table.key):
        raise errdefs.InvalidArgument(f"{table.name}: key has {len(table.key)} fields, got {n}")
    if n == 0:
        return ""
    return " WHERE " + " AND ".join(f"{k} = ?" for k in table.key[:n])


# The statements are built once per table and key length: a get is on the
# path of most calls, and building its text cost a fifth of the lookup.
@functools.cache
def _select(table: Table[Any], n: int) -> str:
    return f"SELECT * FROM {table.name}{_where(table, n)}"


@functools.cache
def _select_ordered(table: Table[Any], n: int) -> str:
    return f"{_select(table, n)} ORDER BY {', '.join(table.key)}"


@functools.cache
def _select_fields(table: Table[Any], names: tuple[str, ...], n: int) -> str:
    codec.field_columns(table.record, names)  # only known names reach the SQL
    query = f"SELECT {', '.join(names)} FROM {table.name}{_where(table, n)}"
    return f"{query} ORDER BY {', '.join(table.key)}"


class SqliteTx:
    """A ``Tx`` on one connection inside an open SQLite transaction."""

    def __init__(self, conn: sqlite3.Connection, writable: bool) -> None:
        self._conn = conn
        self._writable = writable

    @property
    def writable(self) -> bool:
        return self._writable

    def _check_writable(self) -> None:
        if not self._writable:
            raise errdefs.InvalidArgument("write in a read-only metadata transaction")

    def get(self, table: Table[R], *key: str) -> R | None:
        if len(key) != len(table.key):
            raise errdefs.InvalidArgument(f"{table.name}: get needs the full key")
        row = self._conn.execute(_select(table, len(key)), key).fetchone()
        return None if row is None else codec.decode(table.record, row)

    def scan(self, table: Table[R], *prefix: str) -> list[R]:
        rows = self._conn.execute(_select_ordered(table, len(prefix)), prefix).fetchall()
        return [codec.decode(table.record, row) for row in rows]

    def fields(
        self, table: Table[R], names: tuple[str, ...], *prefix: str
    ) -> list[tuple[Any, ...]]:
        decode = codec.fields_decoder(table.record, names)
        rows = self._conn.execute(_select_fields(table, names, len(prefix)), prefix).fetchall()
        return [decode(row) for row in rows]

    def count(self, table: Table[R], *prefix: str) -> int:
        row = self._conn.execute(
            f"SELECT COUNT(*) FROM {table.name}{_where(table, len(prefix))}", prefix
        ).fetchone()
        return int(row[0])

    def put(self, table: Table[R], record: R) -> None:
        self._check_writable()
        values = codec.encode(record)
        marks = ", ".join("?" for _ in values)
        self._conn.execute(f"INSERT OR REPLACE INTO {table.name} VALUES ({marks})", values)

    def delete(self, table: Table[R], *key: str) -> bool:
        self._check_writable()
        if len(key) != len(table.key):
            raise errdefs.InvalidArgument(f"{table.name}: delete needs the full key")
        cur = self._conn.execute(f"DELETE FROM {table.name}{_where(table, len(key))}", key)
        return cur.rowcount > 0

    def delete_all(self, table: Table[R], *prefix: str) -> int:
        self._check_writable()
        cur = self._conn.execute(f"DELETE FROM {table.name}{_where(table, len(prefix))}", prefix)
        return int(cur.rowcount)

    def next_sequence(self, count: int = 1) -> int:
        self._check_writable()
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'sequence'").fetchone()
        first = (int(row[0]) if row else 0) + 1
        self._conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('sequence', ?)",
            (str(first + count - 1),),
        )
        return first


class SqliteStore:
    """``MetadataStore`` on the SQLite database file ``path``."""

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self._synchronous = synchronous
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="metadata-write")
        self._closed = False
        # Write transactions begun plus those ended: odd while one runs.
        # Only the writer thread changes it.
        self._writes = 0
        self._points = _Kept(POINT_CACHE)
        self._scans = _Kept(SCANS_KEPT)
        # Create the schema before anything else can read.
        self._writer.submit(self._init_schema).result()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _init_schema(self) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is not None and int(row[0]) > SCHEMA_VERSION:
                raise errdefs.FailedPrecondition(
                    f"metadata database {self.path} has schema {row[0]}, "
                    f"newer than this berthd understands ({SCHEMA_VERSION})"
                )
            for table in TABLES:
                conn.execute(_ddl(table))
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)",
                (str(SCHEMA_VERSION),),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _run_write(self, fn: Callable[[SqliteTx], T]) -> T:
        conn = self._connection()
        self._writes += 1
        try:
            conn.execute("BEGIN IMMEDIATE")
            result = fn(SqliteTx(conn, writable=True))
            # Inside the try: a COMMIT that fails (SQLITE_BUSY, disk full)
            # leaves the transaction open, and the next BEGIN on this
            # connection would fail forever unless we roll back.
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            self._writes += 1
        return result

    def _run_read(self, fn: Callable[[SqliteTx], T]) -> T:
        conn = self._connection()
        # A deferred transaction pins one snapshot of the WAL for every
        # statement of ``fn``.
        conn.execute("BEGIN")
        try:
            return fn(SqliteTx(conn, writable=False))
        finally:
            conn.execute("COMMIT")

    def _check_open(self) -> None:
        if self._closed:
            raise errdefs.Unavailable(f"metadata store {self.path} is closed")

    async def view(self, fn: Callable[[SqliteTx], T]) -> T:
        self._check_open()
        return self._run_read(fn)

    async def get(self, table: Table[R], *key: str) -> R | None:
        self._check_open()
        writes = self._writes
        at = (table.name, key)
        kept = self._points.get(at, writes)
        if kept is not _NOTHING:
            return kept  # type: ignore[no-any-return]
        # One statement: SQLite runs it on one snapshot without a BEGIN.
        record = SqliteTx(self._connection(), writable=False).get(table, *key)
        self._keep(self._points, at, writes, record)
        return record

    async def scan(self, table: Table[R], *prefix: str) -> list[R]:
        self._check_open()
        writes = self._writes
        at = (table.name, prefix)
        kept = self._scans.get(at, writes)
        if kept is not _NOTHING:
            return list(kept)
        records = SqliteTx(self._connection(), writable=False).scan(table, *prefix)
        if len(records) <= SCAN_KEPT:
            self._keep(self._scans, at, writes, tuple(records))
        return records

    def _keep(self, kept: _Kept, at: tuple[str, tuple[str, ...]], writes: int, value: Any) -> None:
        # Only what was read while no write ran at any time around the read:
        # then it is the committed state, until the next write begins.
        if not writes & 1 and self._writes == writes:
            kept.put(at, writes, value)

    async def update(self, fn: Callable[[SqliteTx], T]) -> T:
        self._check_open()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self._run_write, fn)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._points.clear()
        self._scans.clear()
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self._writer.shutdown(wait=True)
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                log.exception("closing metadata connection to %s", self.path)
