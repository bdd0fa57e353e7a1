"""The metadata database: a ``MetadataStore`` plus what the collector needs to know.

Every object store runs its transactions through ``MetadataDB.update``,
which counts *dirty* operations (those that removed a reference, so that a
collection could free something) and tells the registered mutation
callbacks — the GC scheduler — after each commit, as containerd's
``metadata.DB.Update`` does.  Which backends were touched by deletions
(content, or a snapshotter by name) is remembered so a collection only walks
those backends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

from daemon.metadata import records
from daemon.metadata.store import NAMESPACES, MetadataStore, R, Table, Tx

log = logging.getLogger(__name__)

T = TypeVar("T")

MutationCallback = Callable[[bool], None]


# Store sequence numbers taken at a time by ``MetadataDB.sequence``.
SEQUENCE_BLOCK = 64


class MetadataDB:
    def __init__(self, store: MetadataStore) -> None:
        self.store = store
        self.dirty = 0
        self.dirty_content = False
        self.dirty_snapshotters: set[str] = set()
        self._callbacks: list[MutationCallback] = []
        self._sequence = self._sequence_end = 0
        self._sequence_lock = asyncio.Lock()

    async def sequence(self) -> int:
        """A number the store never gave out before, without a write transaction
        of its own most of the time: numbers are taken from the store
        ``SEQUENCE_BLOCK`` at a time (those unused at exit are skipped, as
        numbers only have to be new)."""
        async with self._sequence_lock:
            if self._sequence >= self._sequence_end:
                first = await self.store.update(lambda tx: tx.next_sequence(SEQUENCE_BLOCK))
                self._sequence, self._sequence_end = first, first + SEQUENCE_BLOCK
            self._sequence += 1
            return self._sequence - 1

    def register_mutation_callback(self, fn: MutationCallback) -> None:
        """``fn(dirty)`` is called after every committed update."""
        self._callbacks.append(fn)

    async def view(self, fn: Callable[[Tx], T]) -> T:
        return await self.store.view(fn)

    async def get(self, table: Table[R], *key: str) -> R | None:
        return await self.store.get(table, *key)

    async def scan(self, table: Table[R], *prefix: str) -> list[R]:
        return await self.store.scan(table, *prefix)

    async def update(
        self,
        fn: Callable[[Tx], T],
        *,
        dirty: bool = False,
        content: bool = False,
        snapshotter: str = "",
    ) -> T:
        """Run ``fn`` in one write transaction; then record what it freed.

        ``dirty`` says the operation removed a reference; ``content`` and
        ``snapshotter`` name the backends that may now hold garbage.
        """
        result = await self.store.update(fn)
        self.mark(dirty=dirty, content=content, snapshotter=snapshotter)
        return result

    def mark(self, *, dirty: bool = False, content: bool = False, snapshotter: str = "") -> None:
        if dirty or content or snapshotter:
            self.dirty += 1
        if content:
            self.dirty_content = True
        if snapshotter:
            self.dirty_snapshotters.add(snapshotter)
        is_dirty = self.dirty > 0
        for cb in self._callbacks:
            try:
                cb(is_dirty)
            except Exception:
                log.exception("metadata mutation callback failed")

    async def close(self) -> None:
        await self.store.close()


def ensure_namespace(tx: Tx, namespace: str) -> None:
    """Objects created in a namespace create it, as bolt's nested buckets do."""
    if tx.get(NAMESPACES, namespace) is None:
        tx.put(NAMESPACES, records.Namespace(namespace, {}))
