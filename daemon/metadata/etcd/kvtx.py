"""One optimistic transaction over etcd keys: snapshot reads, a read set, a write set.

Reads go to etcd at one revision ``rev`` (the first read's), so a
transaction sees one consistent state, like SQLite's snapshot.  Each read is
remembered as a condition the commit must still find true:

- a key read (present or not): its mod revision is unchanged (``eq``);
- a scanned range: the range's *guard* was not written after ``rev`` (every
  write bumps the guards of its space, see ``layout``), which catches keys
  added, changed *and* deleted;
- a small range read exactly (``scan_exact``): no key in it changed after
  ``rev`` and each key seen is still there unchanged.

Writes stay local (later reads see them) until ``commit_ops`` lays them out
as one etcd Txn: puts, deletes, prefix deletes (split around keys put in the
same transaction: etcd refuses a key written twice in one Txn) and the guard
bumps.  ``compares`` gives the conditions; the store sends both and runs the
transaction function again when etcd says a condition failed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from api.etcd.etcdserverpb import rpc_pb2
from daemon.metadata.etcd.layout import Layout, Space, range_end

PAGE = 5000

ReadFn = Callable[[rpc_pb2.RangeRequest], rpc_pb2.RangeResponse]
TxnReadFn = Callable[[rpc_pb2.TxnRequest], rpc_pb2.TxnResponse]
Rows = dict[bytes, tuple[bytes, int]]  # key -> (value, mod revision)

MOD = rpc_pb2.Compare.MOD
EQUAL = rpc_pb2.Compare.EQUAL
LESS = rpc_pb2.Compare.LESS


def compare_eq(key: bytes, mod: int) -> rpc_pb2.Compare:
    return rpc_pb2.Compare(target=MOD, result=EQUAL, key=key, mod_revision=mod)


def compare_unchanged(key: bytes, end: bytes, rev: int) -> rpc_pb2.Compare:
    """Every key in [key, end) (or just ``key``) was last written at or before ``rev``."""
    return rpc_pb2.Compare(target=MOD, result=LESS, key=key, range_end=end, mod_revision=rev + 1)


def put_op(key: bytes, value: bytes) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value))


def delete_op(key: bytes, end: bytes = b"") -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(
        request_delete_range=rpc_pb2.DeleteRangeRequest(key=key, range_end=end)
    )


@dataclass
class Op:
    """One write of the commit and the guards it bumps."""

    op: rpc_pb2.RequestOp
    guards: frozenset[bytes]
    key: bytes
    end: bytes = b""  # a range delete's end
    deleted: bool = False


@dataclass
class ReadSet:
    rev: int
    eq: dict[bytes, int] = field(default_factory=dict)
    unchanged: set[tuple[bytes, bytes]] = field(default_factory=set)


class KVTx:
    def __init__(self, layout: Layout, read: ReadFn, read_txn: TxnReadFn | None = None) -> None:
        self.layout = layout
        self._read = read
        self._read_txn = read_txn
        self.rev = 0
        self._points: dict[bytes, tuple[bytes | None, int]] = {}
        self._scans: dict[bytes, Rows] = {}
        self.reads = ReadSet(0)
        self.writes: dict[bytes, bytes | None] = {}
        self.range_deletes: list[tuple[bytes, bytes, frozenset[bytes]]] = []
        self.reads_issued = 0

    # ------------------------------------------------------------------ reads

    def _fetch(
        self, key: bytes, end: bytes, *, limit: int = 0, keys_only: bool = False
    ) -> list[tuple[bytes, bytes, int]]:
        out: list[tuple[bytes, bytes, int]] = []
        start = key
        while True:
            page = PAGE if not limit else min(PAGE, limit - len(out))
            req = rpc_pb2.RangeRequest(
                key=start,
                range_end=end,
                revision=self.rev,
                limit=page if end else 0,
                keys_only=keys_only,
                # Once the revision is fixed the member need not check with
                # the leader: that revision is committed.
                serializable=self.rev != 0,
            )
            resp = self._read(req)
            self.reads_issued += 1
            if self.rev == 0:
                self.rev = resp.header.revision
                self.reads.rev = self.rev
            out.extend((kv.key, kv.value, kv.mod_revision) for kv in resp.kvs)
            if not end or not resp.more or not resp.kvs or (limit and len(out) >= limit):
                return out
            start = resp.kvs[-1].key + b"\0"

    def _range_deleted(self, key: bytes) -> bool:
        return any(s <= key < e for s, e, _ in self.range_deletes)

    def _cached_scan(self, prefix: bytes) -> Rows | None:
        rows = self._scans.get(prefix)
        if rows is not None:
            return rows
        for p, covering in self._scans.items():
            if prefix.startswith(p):
                return {k: v for k, v in covering.items() if k.startswith(prefix)}
        return None

    def _local(self, key: bytes) -> tuple[bool, bytes | None]:
        """(True, value) when this transaction already knows ``key``."""
        if key in self.writes:
            return True, self.writes[key]
        if self._range_deleted(key):
            return True, None
        hit = self._points.get(key)
        if hit is not None:
            return True, hit[0]
        for p, rows in self._scans.items():
            if key.startswith(p):
                row = rows.get(key)
                return True, row[0] if row is not None else None
        return False, None

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        """Like ``get`` for each key, in one round trip for those not known yet."""
        need = [k for k in keys if not self._local(k)[0]]
        if len(need) > 1 and self._read_txn is not None:
            req = rpc_pb2.TxnRequest(
                success=[
                    rpc_pb2.RequestOp(
                        request_range=rpc_pb2.RangeRequest(
                            key=k, revision=self.rev, serializable=self.rev != 0
                        )
                    )
                    for k in need
                ]
            )
            resp = self._read_txn(req)
            self.reads_issued += 1
            if self.rev == 0:
                self.rev = resp.header.revision
                self.reads.rev = self.rev
            for k, r in zip(need, resp.responses, strict=True):
                kvs = r.response_range.kvs
                value, mod = (kvs[0].value, kvs[0].mod_revision) if kvs else (None, 0)
                self._points[k] = (value, mod)
                self.reads.eq[k] = mod
        return [self.get(k) for k in keys]

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        if self._range_deleted(key):
            return None
        hit = self._points.get(key)
        if hit is not None:
            return hit[0]
        for p, rows in self._scans.items():
            if key.startswith(p):
                row = rows.get(key)
                return row[0] if row is not None else None
        found = self._fetch(key, b"")
        value, mod = (found[0][1], found[0][2]) if found else (None, 0)
        self._points[key] = (value, mod)
        self.reads.eq[key] = mod
        return value

    def _overlay(self, prefix: bytes, rows: Rows) -> dict[bytes, bytes]:
        out = {k: v for k, (v, _) in rows.items() if not self._range_deleted(k)}
        for k, v in self.writes.items():
            if k.startswith(prefix):
                if v is None:
                    out.pop(k, None)
                else:
                    out[k] = v
        return out

    def scan(self, space: Space, fields: tuple[str, ...]) -> dict[bytes, bytes]:
        """Keys under ``space.prefix(fields)`` with their values (unordered)."""
        prefix = space.prefix(fields)
        rows = self._cached_scan(prefix)
        if rows is None:
            rows = {k: (v, m) for k, v, m in self._fetch(prefix, range_end(prefix))}
            self._scans[prefix] = rows
            self.reads.unchanged.add((space.scan_guard(fields), b""))
        return self._overlay(prefix, rows)

    def scan_exact(self, prefix: bytes) -> dict[bytes, bytes]:
        """A small range, guarded key by key rather than by its space's guard."""
        rows = self._cached_scan(prefix)
        if rows is None:
            end = range_end(prefix)
            rows = {k: (v, m) for k, v, m in self._fetch(prefix, end)}
            self.reads.unchanged.add((prefix, end))
            for k, (v, m) in rows.items():
                self._points[k] = (v, m)
                self.reads.eq[k] = m
        return self._overlay(prefix, rows)

    def exists_under(self, prefix: bytes) -> bytes | None:
        """A key under ``prefix`` (as of this transaction), or None."""
        for k, v in self.writes.items():
            if k.startswith(prefix) and v is not None:
                return k
        rows = self._cached_scan(prefix)
        if rows is not None:
            live = self._overlay(prefix, rows)
            return min(live) if live else None
        end = range_end(prefix)
        found = [
            k
            for k, _, _ in self._fetch(prefix, end, limit=64, keys_only=True)
            if not self._range_deleted(k) and self.writes.get(k, b"") is not None
        ]
        if found:
            return found[0]
        # Nothing there: the commit must still find nothing there.
        self.reads.unchanged.add((prefix, end))
        return None

    # ------------------------------------------------------------------ writes

    def put(self, key: bytes, value: bytes) -> None:
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        self.writes[key] = None

    def delete_prefix(self, space: Space, fields: tuple[str, ...]) -> int:
        """Remove every key under the prefix; returns how many there were."""
        live = self.scan(space, fields)
        prefix = space.prefix(fields)
        guards: set[bytes] = {space.guard.encode()}
        for k in live:
            guards.update(space.guards(space.fields(k)))
        for k in [k for k in self.writes if k.startswith(prefix)]:
            del self.writes[k]
        self.range_deletes.append((prefix, range_end(prefix), frozenset(guards)))
        return len(live)

    @property
    def has_writes(self) -> bool:
        return bool(self.writes or self.range_deletes)

    # ------------------------------------------------------------------ commit

    def _guards_of(self, key: bytes) -> frozenset[bytes]:
        space = self.layout.space_of(key)
        if space is None:
            return frozenset()
        return frozenset(space.guards(space.fields(key)))

    def commit_ops(self) -> list[Op]:
        """The writes as etcd operations, in a deterministic order."""
        ops: list[Op] = []
        puts = sorted(k for k, v in self.writes.items() if v is not None)
        for start, end, guards in self.range_deletes:
            cur = start
            for k in (k for k in puts if start <= k < end):
                if cur < k:
                    ops.append(Op(delete_op(cur, k), guards, cur, k, deleted=True))
                cur = k + b"\0"
            if cur < end:
                ops.append(Op(delete_op(cur, end), guards, cur, end, deleted=True))
        for k, v in sorted(self.writes.items()):
            if v is None:
                if not self._range_deleted(k):
                    ops.append(Op(delete_op(k), self._guards_of(k), k, deleted=True))
            else:
                ops.append(Op(put_op(k, v), self._guards_of(k), k))
        return ops

    def collapse(self, limit: int) -> ReadSet:
        """The read set with at most ``limit`` conditions: key conditions are
        traded for their space's guards (coarser, never wrong) when needed."""
        rs = self.reads
        if len(rs.eq) + len(rs.unchanged) <= limit:
            return rs
        return self.guards_only()

    def guards_only(self) -> ReadSet:
        """Every condition as a guard condition (keys outside any space stay)."""
        rs = ReadSet(self.rev)
        for key, mod in self.reads.eq.items():
            space = self.layout.space_of(key)
            if space is None:
                rs.eq[key] = mod
            else:
                rs.unchanged.add((space.covering_guard(key), b""))
        for key, end in self.reads.unchanged:
            space = self.layout.space_of(key) if end else None
            if space is None:
                rs.unchanged.add((key, end))
            else:
                rs.unchanged.add((space.covering_guard(key), b""))
        return rs


def compares(rs: ReadSet, own: dict[bytes, int] | None = None) -> list[rpc_pb2.Compare]:
    """The read set as etcd compares; ``own`` maps keys this transaction
    itself wrote in earlier chunks to their revision then (0: deleted)."""
    own = own or {}
    out = []
    for key, mod in sorted(rs.eq.items()):
        out.append(compare_eq(key, own.get(key, mod)))
    for key, end in sorted(rs.unchanged):
        if not end and key in own:
            out.append(compare_eq(key, own[key]))
        else:
            out.append(compare_unchanged(key, end, rs.rev))
    return out


def chunks(ops: Iterable[Op], limit: int) -> list[list[Op]]:
    """``ops`` in groups whose writes plus guard bumps stay within ``limit``."""
    out: list[list[Op]] = []
    cur: list[Op] = []
    guards: set[bytes] = set()
    for op in ops:
        new = op.guards - guards
        if cur and len(cur) + len(guards) + 1 + len(new) > limit:
            out.append(cur)
            cur, guards = [], set()
            new = op.guards
        cur.append(op)
        guards |= new
    if cur:
        out.append(cur)
    return out


def with_bumps(group: list[Op]) -> list[rpc_pb2.RequestOp]:
    bumps = sorted({g for op in group for g in op.guards})
    return [op.op for op in group] + [put_op(g, b"") for g in bumps]
