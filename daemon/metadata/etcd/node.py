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


def process_start(pid: int) -> str:
    """The kernel's start time of ``pid`` ("" when it does not exist)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


async def stop_stream_task(
    task: asyncio.Task[None], call: grpc.aio.StreamStreamCall[Any, Any] | None
) -> None:
    """Stop a task that serves a gRPC stream: the call first (a task blocked
    in the stream's write does not always see its own cancellation at once),
    then the task, waiting a bounded moment for it."""
    if call is not None:
        call.cancel()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2.0)
    if not done:
        log.warning("etcd: %s did not stop within 2s (left behind)", task.get_name())
    elif not task.cancelled() and task.exception() is not None:
        log.debug("etcd: %s ended with %r", task.get_name(), task.exception())


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
        self._keepalive: asyncio.Task[None] | None = None
        self._call: grpc.aio.StreamStreamCall[Any, Any] | None = None
        # Set before the keep-alive task is cancelled: a stream call may turn
        # the cancellation into an error of its own, which must not loop on.
        self._stopping = False

    @property
    def identity(self) -> dict[str, Any]:
        pid = os.getpid()
        return {
            "node": self.store.node,
            "host": self.host,
            "pid": pid,
            "start": process_start(pid),
            "root": self.root,
        }

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
        while not self._stopping:
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
                        await asyncio.sleep(every)
                finally:
                    self._call = None
                    call.cancel()
            except asyncio.CancelledError:
                raise
            except errdefs.FailedPrecondition as e:
                self.store.fail(e)
                return
            except Exception as e:
                if self._stopping:
                    return
                if not isinstance(e, grpc.aio.AioRpcError | Unreachable | TimeoutError):
                    log.exception("etcd: lease keep-alive failed")
                    await asyncio.sleep(1.0)
                    continue
                client.rotate(i)
                why = e.details() if isinstance(e, grpc.aio.AioRpcError) else str(e)
                self.store.set_up(False, f"lease keep-alive: {why}")
                await asyncio.sleep(0.5)

    async def leave(self) -> None:
        """Stop keeping the lease and revoke it: the node's live key goes at once."""
        self._stopping = True
        if self._keepalive is not None:
            await stop_stream_task(self._keepalive, self._call)
            self._keepalive = None
        if self.lease:
            with contextlib.suppress(Exception):
                await self.store.client.lease_revoke(self.lease, time.monotonic() + 2.0)
            self.lease = 0
