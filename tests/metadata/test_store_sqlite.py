"""What only the SQLite metadata store does (the contract is ``test_store``'s)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from api import errdefs
from daemon.metadata import records
from daemon.metadata.sqlite import SCHEMA_VERSION, SqliteStore
from daemon.metadata.store import (
    NAMESPACES,
)


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    await SqliteStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(errdefs.FailedPrecondition, match="newer"):
        SqliteStore(path)


def test_database_is_in_wal_mode(tmp_path: Path) -> None:
    async def run() -> None:
        store = SqliteStore(tmp_path / "m.db")
        await store.update(lambda tx: tx.put(NAMESPACES, records.Namespace("x")))
        await store.close()

    asyncio.run(run())
    with sqlite3.connect(tmp_path / "m.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
