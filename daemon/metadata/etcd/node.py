"""A node's presence in the cluster: its member key and its live key under an etcd lease.

``P/members/<node>`` is written once, when a node first joins, and stays
(other nodes look there for what a node may still hold, e.g. before a
namespace is deleted).  ``P/nodes/<node>`` says the node is alive: it is
bound to an etcd lease of ``lease_ttl`` seconds that the node keeps alive;
when the node stops (or dies, or loses etcd for longer than the TTL) etcd
drops the key and the node no longer counts as a holder of anything.

Two daemons must never share a node name (they would share per-node
records).  A live key held by another process is refused, unless it is
this node's own from before a crash: the same host and root, and a process
that is gone (or this one).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

import grpc

from api import errdefs
from api.etcd.etcdserverpb import rpc_pb2
from daemon.metadata import records
from daemon.metadata.etcd.client import HAS_LEADER, Unreachable

if TYPE_CHECKING:
    from daemon.metadata.etcd.store import EtcdStore

log = logging.getLogger(__name__)

# How long leave() waits for the keep-alive task to end.
LEAVE_WAIT = 2.0


def process_start(pid: int) -> str:
    """The kernel's start time of ``pid`` ("" when it does not exist)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _create_if_absent(key: bytes, value: bytes, lease: int = 0) -> rpc_pb2.TxnRequest:
    return rpc_pb2.TxnRequest(
        compare=[
            rpc_pb2.Compare(
                target=rpc_pb2.Compare.CREATE,
                result=rpc_pb2.Compare.EQUAL,
                key=key,
                create_revision=0,
            )
        ],
        success=[
            rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value, lease=lease))
        ],
        failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key))],
    )


class NodeSession:
    def __init__(self, store: EtcdStore, root: str) -> None:
        self.store = store
        self.root = os.path.abspath(root) if root else ""
        self.lease = 0
        self.host = socket.gethostname()
        # The node's peer content address (``daemon.peer``), once published.
        self.peer = ""
        self._keepalive: asyncio.Task[None] | None = None
        self._call: Any = None
        self._leaving = False
        self._stop = asyncio.Event()

    @property
    def identity(self) -> dict[str, Any]:
        pid = os.getpid()
        ident: dict[str, Any] = {
            "node": self.store.node,
            "host": self.host,
            "pid": pid,
            "start": process_start(pid),
            "root": self.root,
        }
        if self.peer:
            ident["peer"] = self.peer
        return ident

    async def join(self, deadline: float) -> None:
        """Register the node and take its live key.  FailedPrecondition when
        another live process has the name."""
        layout = self.store.layout
        client = self.store.client
        member = layout.members.key((self.store.node,))
        value = json.dumps({"node": self.store.node, "host": self.host, "since": records.now_ns()})
        await client.txn(_create_if_absent(member, value.encode()), deadline)
        await self._claim(deadline)
        if self._keepalive is None:
            self._keepalive = asyncio.create_task(self._keep_alive(), name="etcd-keepalive")

    def _stale(self, info: dict[str, Any]) -> bool:
        """``info`` (a live key's value) is this node's own, left by a process that is gone."""
        if info.get("host") != self.host or info.get("root") != self.root:
            return False
        pid = int(info.get("pid", 0))
        return pid == os.getpid() or process_start(pid) != info.get("start")

    async def _claim(self, deadline: float) -> None:
        client = self.store.client
        key = self.store.layout.nodes.key((self.store.node,))
        ttl = self.store.settings.lease_ttl
        for _ in range(5):
            if self.lease == 0:
                self.lease = (await client.lease_grant(ttl, deadline)).ID
            value = json.dumps(self.identity).encode()
            resp = await client.txn(_create_if_absent(key, value, self.lease), deadline)
            if resp.succeeded:
                log.info(
                    "etcd: node %r is live (lease %x, ttl %ds)", self.store.node, self.lease, ttl
                )
                return
            kvs = resp.responses[0].response_range.kvs
            if not kvs:
                continue
            if kvs[0].lease == self.lease:
                return
            try:
                info = json.loads(kvs[0].value)
            except ValueError:
                info = {}
            if not self._stale(info):
                raise errdefs.FailedPrecondition(
                    f"etcd: node name {self.store.node!r} is in use by berthd pid "
                    f"{info.get('pid', '?')} on {info.get('host', '?')} (root "
                    f"{info.get('root', '?')}); give each node its own "
                    '[plugins."io.containerd.metadata.v1.berthd"] node'
                )
            log.warning(
                "etcd: node %r: taking over the live key left by pid %s (gone)",
                self.store.node,
                info.get("pid"),
            )
            await client.lease_revoke(kvs[0].lease, deadline)
            await client.txn(
                rpc_pb2.TxnRequest(
                    compare=[
                        rpc_pb2.Compare(
                            target=rpc_pb2.Compare.MOD,
                            result=rpc_pb2.Compare.EQUAL,
                            key=key,
                            mod_revision=kvs[0].mod_revision,
                        )
                    ],
                    success=[
                        rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=key))
                    ],
                ),
                deadline,
            )
        raise Unreachable(f"could not take the live key of node {self.store.node!r}")

    async def _keep_alive(self) -> None:
        """Refresh the lease every third of its TTL; take the key again if it lapsed."""
        client = self.store.client
        every = max(self.store.settings.lease_ttl / 3.0, 0.5)
        while not self._leaving:
            i = client.current
            try:
                call = client.lease_stub(i).LeaseKeepAlive(metadata=HAS_LEADER)
                self._call = call
                try:
                    while True:
                        await call.write(rpc_pb2.LeaseKeepAliveRequest(ID=self.lease))
                        resp = await asyncio.wait_for(
                            call.read(), self.store.settings.request_timeout
                        )
                        if not isinstance(resp, rpc_pb2.LeaseKeepAliveResponse):
                            raise Unreachable("keep-alive stream ended")
                        if resp.TTL <= 0:
                            log.warning(
                                "etcd: the lease of node %r expired; joining again",
                                self.store.node,
                            )
                            self.lease = 0
                            await self._claim(
                                time.monotonic() + self.store.settings.request_timeout
                            )
                            continue
                        self.store.set_up(True)
                        # Not asyncio.sleep: leave() must be able to end this
                        # wait even when a cancellation was swallowed (below).
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._stop.wait(), every)
                        if self._leaving:
                            return
                finally:
                    call.cancel()
                    self._call = None
            except asyncio.CancelledError:
                raise
            except errdefs.FailedPrecondition as e:
                self.store.fail(e)
                return
            except (grpc.aio.AioRpcError, Unreachable, TimeoutError) as e:
                client.rotate(i)
                why = e.details() if isinstance(e, grpc.aio.AioRpcError) else str(e)
                self.store.set_up(False, f"lease keep-alive: {why}")
                await asyncio.sleep(0.5)
            except Exception:
                log.exception("etcd: lease keep-alive failed")
                await asyncio.sleep(1.0)

    async def leave(self) -> None:
        """Stop keeping the lease and revoke it: the node's live key goes at once."""
        if self._keepalive is not None:
            # grpc-aio can swallow a task cancellation that lands in a stream's
            # write: end the stream itself too, and never wait without bound.
            self._leaving = True
            self._stop.set()
            if self._call is not None:
                self._call.cancel()
            self._keepalive.cancel()
            done, _ = await asyncio.wait({self._keepalive}, timeout=LEAVE_WAIT)
            if not done:
                log.warning("etcd: the lease keep-alive of node %r did not stop", self.store.node)
            self._keepalive = None
        if self.lease:
            with contextlib.suppress(Exception):
                await self.store.client.lease_revoke(self.lease, time.monotonic() + 2.0)
            self.lease = 0
