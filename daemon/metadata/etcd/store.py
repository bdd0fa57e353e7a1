"""The etcd metadata store: ``MetadataStore`` over an etcd cluster shared by nodes.

A transaction function runs on a worker thread; its reads go to etcd
(bridged to the event loop) at one revision, and its writes are sent as one
etcd Txn guarded by everything it read (``kvtx``).  When etcd says something
read has changed since, the function runs again on fresh reads (tenacity,
jittered back-off) until the request deadline (``request_timeout``); giving
up is Aborted.  etcd out of reach is Unavailable naming etcd, within the
same deadline.

A Txn that failed after it may have reached etcd (a member died under it)
is checked before anything is repeated: when every key it put holds what it
put, at one revision, it was applied and its result stands.

``update_divisible`` is for the collector: a sweep may delete more keys than
etcd takes in one Txn (``--max-txn-ops``), so its writes go in several Txns,
each guarded by every read of the sweep (as guards) and by the revisions of
the chunks before it; if a chunk finds the state changed, what was already
removed stays removed (it was unreachable when removed) and the sweep runs
again.

At start (and whenever etcd comes back) the store checks the layout version
key, registers the node (``node.NodeSession``) and watches the cluster
(``watch.ClusterWatch``).  Until then calls try to do that first, within
their deadline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_random_exponential,
)

from api import errdefs
from api.etcd.etcdserverpb import rpc_pb2
from daemon.metadata.etcd import kvtx
from daemon.metadata.etcd.client import (
    CommitUnknown,
    EtcdClient,
    EtcdRejected,
    OutOfTime,
    StaleRevision,
    Unreachable,
)
from daemon.metadata.etcd.cluster import ClusterView
from daemon.metadata.etcd.layout import LAYOUT_VERSION, Layout
from daemon.metadata.etcd.node import NodeSession
from daemon.metadata.etcd.settings import EtcdSettings
from daemon.metadata.etcd.tx import EtcdTx
from daemon.metadata.etcd.watch import ClusterWatch
from daemon.metadata.store import R, Table

log = logging.getLogger(__name__)

T = TypeVar("T")

THREADS = 16
# A collection may take this many request timeouts.
SWEEP_BUDGET = 12


class Conflict(Exception):
    """Something the transaction read changed before it committed."""


class EtcdStore:
    def __init__(self, settings: EtcdSettings, *, root: str = "") -> None:
        self.settings = settings
        self.layout = Layout(settings.prefix, settings.node)
        self.node = settings.node
        self.client = EtcdClient(settings)
        self.session = NodeSession(self, root)
        self.watch = ClusterWatch(self)
        self.cluster = ClusterView(self.client, self.layout, settings.request_timeout)
        self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="etcd-tx")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = False
        self._init_lock: asyncio.Lock | None = None
        self._failed: errdefs.ErrdefsError | None = None
        self._closed = False
        self._up = False
        self.state = "connecting"
        self._listeners: list[Callable[[bool], None]] = []
        self._maintainer: asyncio.Task[None] | None = None
        self.stats = {"transactions": 0, "conflicts": 0, "unknown_commits": 0, "chunks": 0}

    # ------------------------------------------------------------------ liveness

    @property
    def up(self) -> bool:
        return self._up

    def on_change(self, listener: Callable[[bool], None]) -> None:
        self._listeners.append(listener)

    def set_up(self, up: bool, why: str = "") -> None:
        state = "ok" if up else f"unavailable: {why}"
        if self._failed is not None:
            state = f"error: {self._failed.message}"
            up = False
        self.state = state
        if up == self._up:
            return
        self._up = up
        if up:
            log.info("etcd metadata store: etcd is answering (%s)", self.client.describe())
        else:
            log.warning("etcd metadata store: etcd unavailable: %s", why)
        for fn in list(self._listeners):
            try:
                fn(up)
            except Exception:
                log.exception("etcd liveness listener failed")

    def describe(self) -> str:
        return f"etcd {self.client.describe()}"

    # ------------------------------------------------------------------ start-up

    async def start(self, wait: float = 0.0) -> None:
        """Begin connecting; wait up to ``wait`` seconds for etcd.

        Raises FailedPrecondition when etcd answers and refuses this node
        (its name is taken, the layout is newer); etcd not answering is not
        an error (the store keeps trying and reports itself down).
        """
        self._loop = asyncio.get_running_loop()
        self._init_lock = asyncio.Lock()
        if wait > 0:
            try:
                await self.ensure_ready(time.monotonic() + wait)
            except Unreachable as e:
                self.set_up(False, str(e))
                log.warning(
                    "etcd metadata store: %s not answering yet (%s); retrying in the background",
                    self.client.describe(),
                    e,
                )
        self._maintainer = asyncio.create_task(self._maintain(), name="etcd-store")

    async def ensure_ready(self, deadline: float) -> None:
        if self._failed is not None:
            raise self._failed
        if self._ready:
            return
        lock = self._init_lock
        assert lock is not None
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                await lock.acquire()
        except TimeoutError:
            raise Unreachable("still connecting to etcd") from None
        try:
            if self._ready:
                return
            await self._check_layout(deadline)
            await self.session.join(deadline)
            self._ready = True
            self.watch.start()
            self.set_up(True)
        finally:
            lock.release()

    def fail(self, err: errdefs.ErrdefsError) -> None:
        """Stop serving for good (another process owns this node's name)."""
        self._failed = err
        self.set_up(False, err.message)
        log.error("etcd metadata store: %s", err.message)

    async def _check_layout(self, deadline: float) -> None:
        key = self.layout.version_key
        ours = str(LAYOUT_VERSION).encode()
        resp = await self.client.txn(
            rpc_pb2.TxnRequest(
                compare=[
                    rpc_pb2.Compare(
                        target=rpc_pb2.Compare.CREATE,
                        result=rpc_pb2.Compare.EQUAL,
                        key=key,
                        create_revision=0,
                    )
                ],
                success=[kvtx.put_op(key, ours)],
                failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key))],
            ),
            deadline,
            read_only=False,
        )
        if resp.succeeded:
            log.info("etcd metadata store: new cluster under %s (layout %s)", key.decode(), ours)
            return
        kvs = resp.responses[0].response_range.kvs
        found = kvs[0].value.decode() if kvs else ""
        if not found.isdigit() or int(found) > LAYOUT_VERSION:
            self.fail(
                errdefs.FailedPrecondition(
                    f"etcd key {key.decode()} says layout {found!r}, newer than this berthd "
                    f"understands ({LAYOUT_VERSION})"
                )
            )
            assert self._failed is not None
            raise self._failed
        # Older layouts would be migrated here (there is none before 1).

    async def _maintain(self) -> None:
        """Reconnect after etcd was away; probe while it is away."""
        while not self._closed:
            await asyncio.sleep(1.0 if not self._up else 2.0)
            if self._closed or self._failed is not None:
                continue
            deadline = time.monotonic() + self.settings.request_timeout
            try:
                if not self._ready:
                    await self.ensure_ready(deadline)
                elif not self._up:
                    await self.client.range(
                        rpc_pb2.RangeRequest(key=self.layout.version_key), deadline
                    )
                    self.set_up(True)
            except Unreachable as e:
                if self._closed:
                    return
                self.set_up(False, str(e))
            except errdefs.ErrdefsError:
                pass
            except Exception:
                if self._closed:
                    return
                log.exception("etcd metadata store: reconnect failed")

    # ------------------------------------------------------------------ transactions

    async def view(self, fn: Callable[[EtcdTx], T]) -> T:
        return await self._run(fn, writable=False, divisible=False)

    async def get(self, table: Table[R], *key: str) -> R | None:
        # Other nodes write too: every read goes to etcd.
        return await self.view(lambda tx: tx.get(table, *key))

    async def scan(self, table: Table[R], *prefix: str) -> list[R]:
        return await self.view(lambda tx: tx.scan(table, *prefix))

    async def update(self, fn: Callable[[EtcdTx], T]) -> T:
        return await self._run(fn, writable=True, divisible=False)

    async def update_divisible(self, fn: Callable[[EtcdTx], T]) -> T:
        return await self._run(fn, writable=True, divisible=True)

    async def _run(self, fn: Callable[[EtcdTx], T], *, writable: bool, divisible: bool) -> T:
        if self._closed:
            raise errdefs.Unavailable(f"metadata store on {self.describe()} is closed")
        if self._failed is not None:
            raise self._failed
        budget = self.settings.request_timeout * (SWEEP_BUDGET if divisible else 1)
        deadline = time.monotonic() + budget

        def stop(_: RetryCallState) -> bool:
            return time.monotonic() >= deadline

        retrying = AsyncRetrying(
            stop=stop,
            wait=wait_random_exponential(multiplier=0.002, max=0.2),
            retry=retry_if_exception_type((Conflict, Unreachable, StaleRevision)),
            reraise=True,
        )
        # What made the attempt before the last one fail: when the last one
        # ran out of time before etcd was asked, that is the reason to give.
        failed: Exception | None = None
        try:
            async for attempt in retrying:
                with attempt:
                    try:
                        await self.ensure_ready(deadline)
                        result = await self._attempt(fn, writable, divisible, deadline)
                    except OutOfTime:
                        if failed is None:
                            raise
                        raise failed from None
                    except (Conflict, Unreachable, StaleRevision) as e:
                        failed = e
                        raise
                    self.set_up(True)
                    return result
        except OutOfTime as e:
            # etcd answered every call it was given: it is not down.
            raise errdefs.Unavailable(f"{self.describe()}: {e}") from None
        except Unreachable as e:
            self.set_up(False, str(e))
            what = "commit outcome unknown" if isinstance(e, CommitUnknown) else "unreachable"
            raise errdefs.Unavailable(f"{self.describe()}: {what}: {e}") from None
        except Conflict:
            raise errdefs.Aborted(
                f"{self.describe()}: metadata transaction kept conflicting with other writers "
                f"for {budget:g}s"
            ) from None
        except StaleRevision as e:
            raise errdefs.Unavailable(f"{self.describe()}: {e}") from None
        except EtcdRejected as e:
            raise errdefs.Unknown(f"etcd refused a metadata transaction: {e}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _reader(self, deadline: float) -> kvtx.ReadFn:
        loop = self._loop
        assert loop is not None
        client = self.client

        def read(req: rpc_pb2.RangeRequest) -> rpc_pb2.RangeResponse:
            fut = asyncio.run_coroutine_threadsafe(client.range(req, deadline), loop)
            return _wait(fut, deadline)

        return read

    def _txn_reader(self, deadline: float) -> kvtx.TxnReadFn:
        loop = self._loop
        assert loop is not None
        client = self.client

        def read(req: rpc_pb2.TxnRequest) -> rpc_pb2.TxnResponse:
            coro = client.txn(req, deadline, read_only=True)
            return _wait(asyncio.run_coroutine_threadsafe(coro, loop), deadline)

        return read

    async def _attempt(
        self, fn: Callable[[EtcdTx], T], writable: bool, divisible: bool, deadline: float
    ) -> T:
        self.stats["transactions"] += 1
        kv = kvtx.KVTx(self.layout, self._reader(deadline), self._txn_reader(deadline))
        tx = EtcdTx(kv, self.layout, writable)
        assert self._loop is not None
        result = await self._loop.run_in_executor(self._pool, fn, tx)
        if writable and kv.has_writes:
            await self._commit(kv, deadline, divisible)
        return result

    async def _commit(self, kv: kvtx.KVTx, deadline: float, divisible: bool) -> None:
        limit = self.settings.max_txn_ops
        ops = kv.commit_ops()
        groups = kvtx.chunks(ops, limit)
        if len(groups) <= 1:
            rs = kv.collapse(limit)
            success = kvtx.with_bumps(ops)
            await self._send(
                rpc_pb2.TxnRequest(compare=kvtx.compares(rs), success=success), deadline
            )
            return
        if not divisible:
            raise errdefs.ResourceExhausted(
                f"one metadata operation would write {len(ops)} keys in etcd, more than "
                f"max_txn_ops ({limit}, etcd's --max-txn-ops) allows"
            )
        rs = kv.guards_only()
        own: dict[bytes, int] = {}
        for group in groups:
            req = rpc_pb2.TxnRequest(compare=kvtx.compares(rs, own), success=kvtx.with_bumps(group))
            rev = await self._send(req, deadline)
            self.stats["chunks"] += 1
            for op in group:
                for g in op.guards:
                    own[g] = rev
                if op.key in rs.eq and not op.end:
                    own[op.key] = 0 if op.deleted else rev

    async def _send(self, req: rpc_pb2.TxnRequest, deadline: float) -> int:
        """Commit ``req``; its revision.  Conflict when a compare failed."""
        try:
            resp = await self.client.txn(req, deadline)
        except CommitUnknown as e:
            self.stats["unknown_commits"] += 1
            log.warning("etcd metadata store: %s; checking whether it was applied", e)
            try:
                return await self._applied(req, deadline)
            except OutOfTime:
                # The Txn took the time that was left: its outcome stays unknown.
                raise e from None
        if not resp.succeeded:
            self.stats["conflicts"] += 1
            raise Conflict()
        return resp.header.revision

    async def _applied(self, req: rpc_pb2.TxnRequest, deadline: float) -> int:
        """The revision ``req`` was applied at, or Conflict when it was not."""
        puts = [
            op.request_put
            for op in req.success
            if op.HasField("request_put") and op.request_put.value
        ]
        deletes = [
            op.request_delete_range
            for op in req.success
            if op.HasField("request_delete_range") and not op.request_delete_range.range_end
        ]
        check = rpc_pb2.TxnRequest(
            success=[
                rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=k))
                for k in [p.key for p in puts] + [d.key for d in deletes]
            ]
        )
        resp = await self.client.txn(check, deadline, read_only=True)
        found = [r.response_range.kvs for r in resp.responses]
        put_found, del_found = found[: len(puts)], found[len(puts) :]
        revisions = {kvs[0].mod_revision for kvs in put_found if kvs}
        applied = (
            all(kvs and kvs[0].value == p.value for kvs, p in zip(put_found, puts, strict=True))
            and len(revisions) <= 1
            and not any(del_found)
        )
        if not applied:
            raise Conflict()
        log.info("etcd metadata store: the transaction had been applied")
        return revisions.pop() if revisions else resp.header.revision

    # ------------------------------------------------------------------ cluster

    def on_cluster_change(self, fn: Callable[[], None]) -> None:
        """``fn()`` runs when another node may have removed references (an image
        deleted or changed anywhere in the cluster): a collection is due."""
        self.watch.listeners.append(fn)

    @property
    def live_nodes(self) -> list[str]:
        return sorted(self.watch.live_nodes)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._maintainer is not None:
            self._maintainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintainer
        await self.watch.stop()
        await self.session.leave()
        await self.client.close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _wait(fut: concurrent.futures.Future[R], deadline: float) -> R:
    """A worker thread waits for a read on the loop, never past its deadline
    (a loop that stopped must not leave the thread blocked forever)."""
    try:
        return fut.result(max(deadline - time.monotonic(), 0.0) + 1.0)
    except concurrent.futures.TimeoutError:
        fut.cancel()
        raise Unreachable("no answer from the event loop before the deadline") from None
