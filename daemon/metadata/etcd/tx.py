"""The ``Tx`` of the etcd store: the metadata tables mapped onto the key layout.

Namespaces and images are cluster-wide; containers, leases, their
resources, ingests and snapshots are this node's (``layout``).  Blobs are
the content index: ``put`` records the blob cluster-wide and this node as a
holder (a node joining the holders keeps the labels already there and adds
its own), ``get``/``scan`` show the blobs this node holds, ``delete`` drops
this node's hold and the record with its last holder.

Deleting a namespace also checks the other nodes: it is refused while any
node has containers, snapshots or blobs in it (this node's own objects are
the namespace store's check).
"""

from __future__ import annotations

import dataclasses
import json
import operator
from typing import Any

from api import errdefs
from daemon.metadata import codec, records
from daemon.metadata.etcd import values
from daemon.metadata.etcd.kvtx import KVTx
from daemon.metadata.etcd.layout import Layout, Space
from daemon.metadata.store import (
    BLOBS,
    CONTAINERS,
    IMAGES,
    INGESTS,
    LEASE_RESOURCES,
    LEASES,
    NAMESPACES,
    SNAPSHOTS,
    R,
    Table,
)

# After this many holder look-ups in one namespace, one scan of its holders
# serves the rest (a collection removing many blobs).
_HOLDER_SCAN_AFTER = 8

_KEPT_BY_OTHER_NODES = ("containers", "snapshots", "blobs")


class EtcdTx:
    def __init__(self, kv: KVTx, layout: Layout, writable: bool) -> None:
        self.kv = kv
        self.layout = layout
        self.node = layout.node
        self._writable = writable
        c, n = layout.cluster, layout.local
        self._spaces: dict[str, Space] = {
            NAMESPACES.name: c["namespaces"],
            IMAGES.name: c["images"],
            CONTAINERS.name: n["containers"],
            LEASES.name: n["leases"],
            LEASE_RESOURCES.name: n["lease_resources"],
            INGESTS.name: n["ingests"],
            SNAPSHOTS.name: n["snapshots"],
        }
        self._records = c["blobs"]
        self._holders = c["holders"]
        self._holds = n["blobs"]
        self._holder_lookups: dict[str, int] = {}

    @property
    def writable(self) -> bool:
        return self._writable

    def _check_writable(self) -> None:
        if not self._writable:
            raise errdefs.InvalidArgument("write in a read-only metadata transaction")

    @staticmethod
    def _check_key(table: Table[Any], key: tuple[str, ...], what: str) -> None:
        if len(key) != len(table.key):
            raise errdefs.InvalidArgument(f"{table.name}: {what} needs the full key")

    @staticmethod
    def _check_prefix(table: Table[Any], prefix: tuple[str, ...]) -> None:
        if len(prefix) > len(table.key):
            raise errdefs.InvalidArgument(
                f"{table.name}: key has {len(table.key)} fields, got {len(prefix)}"
            )

    # ------------------------------------------------------------------ Tx

    def get(self, table: Table[R], *key: str) -> R | None:
        self._check_key(table, key, "get")
        if table is BLOBS:
            return self._get_blob(key)  # type: ignore[return-value]
        raw = self.kv.get(self._spaces[table.name].key(key))
        return None if raw is None else values.decode(table.record, raw)

    def scan(self, table: Table[R], *prefix: str) -> list[R]:
        self._check_prefix(table, prefix)
        if table is BLOBS:
            found: list[Any] = self._scan_blobs(prefix)
        else:
            rows = self.kv.scan(self._spaces[table.name], prefix)
            found = [values.decode(table.record, v) for v in rows.values()]
        found.sort(key=table.key_of)
        return found

    def fields(
        self, table: Table[R], names: tuple[str, ...], *prefix: str
    ) -> list[tuple[Any, ...]]:
        codec.field_columns(table.record, names)  # the same names refused as on SQLite
        # A key's value is one document: it is decoded whole either way.
        get = operator.attrgetter(*names)
        if len(names) == 1:
            return [(get(r),) for r in self.scan(table, *prefix)]
        return [get(r) for r in self.scan(table, *prefix)]

    def count(self, table: Table[R], *prefix: str) -> int:
        self._check_prefix(table, prefix)
        if table is BLOBS:
            return len(self._scan_blobs(prefix))
        return len(self.kv.scan(self._spaces[table.name], prefix))

    def put(self, table: Table[R], record: R) -> None:
        self._check_writable()
        key = table.key_of(record)
        if table is BLOBS:
            assert isinstance(record, records.Blob)
            self._put_blob(key, record)
            return
        self.kv.put(self._spaces[table.name].key(key), values.encode(record))

    def delete(self, table: Table[R], *key: str) -> bool:
        self._check_writable()
        self._check_key(table, key, "delete")
        if table is BLOBS:
            return self._delete_blob(key)
        k = self._spaces[table.name].key(key)
        if self.kv.get(k) is None:
            return False
        if table is NAMESPACES:
            self._check_unused_elsewhere(key[0])
        self.kv.delete(k)
        return True

    def delete_all(self, table: Table[R], *prefix: str) -> int:
        self._check_writable()
        self._check_prefix(table, prefix)
        if table is BLOBS:
            held = [(b.namespace, b.digest) for b in self._scan_blobs(prefix)]
            return sum(self._delete_blob(k) for k in held)
        if table is NAMESPACES:
            names = [n.name for n in self.scan(NAMESPACES, *prefix)]
            return sum(self.delete(NAMESPACES, n) for n in names)
        return self.kv.delete_prefix(self._spaces[table.name], prefix)

    def next_sequence(self, count: int = 1) -> int:
        self._check_writable()
        raw = self.kv.get(self.layout.sequence_key)
        first = (int(raw) if raw else 0) + 1
        self.kv.put(self.layout.sequence_key, str(first + count - 1).encode())
        return first

    # ------------------------------------------------------------------ blobs

    def _get_blob(self, key: tuple[str, ...]) -> records.Blob | None:
        hold, raw = self.kv.get_many([self._holds.key(key), self._records.key(key)])
        if hold is None or raw is None:
            return None
        blob: records.Blob = values.decode(records.Blob, raw)
        return blob

    def _scan_blobs(self, prefix: tuple[str, ...]) -> list[records.Blob]:
        held = {self._holds.fields(k) for k in self.kv.scan(self._holds, prefix)}
        if not held:
            return []
        recs = self.kv.scan(self._records, prefix)
        return [
            values.decode(records.Blob, v)
            for k, v in recs.items()
            if self._records.fields(k) in held
        ]

    def _put_blob(self, key: tuple[str, ...], record: records.Blob) -> None:
        rec_key = self._records.key(key)
        if self.kv.get(self._holds.key(key)) is None:
            # Joining the holders of a blob another node recorded: its labels
            # are the cluster's (e.g. the references an unpack added there),
            # so they stay, with this commit's added.
            raw = self.kv.get(rec_key)
            if raw is not None:
                current: records.Blob = values.decode(records.Blob, raw)
                record = dataclasses.replace(
                    record,
                    labels={**current.labels, **record.labels},
                    created_at=current.created_at,
                )
            self.kv.put(self._holds.key(key), b"{}")
            self.kv.put(
                self._holders.key((*key, self.node)),
                json.dumps({"since": records.now_ns()}).encode(),
            )
        self.kv.put(rec_key, values.encode(record))

    def _other_holders(self, key: tuple[str, ...]) -> list[str]:
        ns = key[0]
        n = self._holder_lookups[ns] = self._holder_lookups.get(ns, 0) + 1
        if n > _HOLDER_SCAN_AFTER:
            self.kv.scan(self._holders, (ns,))  # cached: the look-ups below use it
        rows = self.kv.scan_exact(self._holders.prefix(key))
        nodes = [self._holders.fields(k)[-1] for k in rows]
        return [n for n in nodes if n != self.node]

    def _delete_blob(self, key: tuple[str, ...]) -> bool:
        hold = self._holds.key(key)
        if self.kv.get(hold) is None:
            return False
        visible = self.kv.get(self._records.key(key)) is not None
        self.kv.delete(hold)
        self.kv.delete(self._holders.key((*key, self.node)))
        if visible and not self._other_holders(key):
            self.kv.delete(self._records.key(key))
        return visible

    # ------------------------------------------------------------------ namespaces

    def _check_unused_elsewhere(self, ns: str) -> None:
        members = self.kv.scan_exact(self.layout.members.prefix(()))
        for key in sorted(members):
            node = self.layout.members.fields(key)[0]
            if node == self.node:
                continue
            spaces = self.layout.node_tables(node)
            for name in _KEPT_BY_OTHER_NODES:
                if self.kv.exists_under(spaces[name].prefix((ns,))) is not None:
                    raise errdefs.FailedPrecondition(
                        f'namespace "{ns}" must be empty, but node "{node}" still has {name}'
                    )
        # Records nobody holds any more go with the namespace.
        if self.kv.exists_under(self._holders.prefix((ns,))) is None:
            self.kv.delete_prefix(self._records, (ns,))
