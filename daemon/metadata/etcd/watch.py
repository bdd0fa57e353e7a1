"""What a node follows of the cluster: live nodes, and changes that may free garbage.

One etcd Watch stream covers ``P/nodes/`` (the live-node list shown in the
metadata plugin's exports) and the cluster's images and blob records: an
image deleted or rewritten on any node may leave blobs and snapshots here
unreachable, so the listeners (the GC scheduler's trigger) are told.  After
the stream broke, or when etcd compacted past where it left off, the
listeners are told too: what happened meanwhile is unknown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc

from api.etcd.etcdserverpb import rpc_pb2
from api.etcd.mvccpb import kv_pb2
from daemon.metadata.etcd.client import HAS_LEADER, EtcdError
from daemon.metadata.etcd.layout import range_end

if TYPE_CHECKING:
    from daemon.metadata.etcd.store import EtcdStore

log = logging.getLogger(__name__)

DELETE = kv_pb2.Event.DELETE


class ClusterWatch:
    def __init__(self, store: EtcdStore) -> None:
        self.store = store
        self.listeners: list[Callable[[], None]] = []
        self.live_nodes: set[str] = set()
        self.on_nodes: list[Callable[[list[str]], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._call: Any = None
        self._stopping = False
        self._rev = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="etcd-watch")

    async def stop(self) -> None:
        if self._task is not None:
            # grpc-aio can swallow a cancellation that lands in a stream's
            # write: end the stream itself too, and never wait without bound.
            self._stopping = True
            if self._call is not None:
                self._call.cancel()
            self._task.cancel()
            done, _ = await asyncio.wait({self._task}, timeout=2.0)
            if not done:
                log.warning("etcd watch did not stop")
            self._task = None

    def _notify(self) -> None:
        for fn in list(self.listeners):
            try:
                fn()
            except Exception:
                log.exception("etcd cluster-change listener failed")

    def _set_nodes(self, nodes: set[str]) -> None:
        if nodes != self.live_nodes:
            self.live_nodes = nodes
            log.info("etcd: live nodes: %s", ", ".join(sorted(nodes)) or "none")
            for fn in list(self.on_nodes):
                fn(sorted(nodes))

    async def _load_nodes(self) -> int:
        space = self.store.layout.nodes
        prefix = space.prefix(())
        deadline = time.monotonic() + self.store.settings.request_timeout
        resp = await self.store.client.range(
            rpc_pb2.RangeRequest(key=prefix, range_end=range_end(prefix), keys_only=True),
            deadline,
        )
        self._set_nodes({space.fields(kv.key)[0] for kv in resp.kvs})
        return resp.header.revision

    async def _run(self) -> None:
        client = self.store.client
        layout = self.store.layout
        watched = [
            layout.nodes.prefix(()),
            layout.cluster["images"].prefix(()),
            layout.cluster["blobs"].prefix(()),
        ]
        first = True
        while not self._stopping:
            i = client.current
            try:
                rev = await self._load_nodes()
                start = self._rev + 1 if self._rev else rev + 1
                if not first:
                    self._notify()  # what happened while we were away is unknown
                first = False
                call = client.watch_stub(i).Watch(metadata=HAS_LEADER)
                self._call = call
                try:
                    for prefix in watched:
                        await call.write(
                            rpc_pb2.WatchRequest(
                                create_request=rpc_pb2.WatchCreateRequest(
                                    key=prefix, range_end=range_end(prefix), start_revision=start
                                )
                            )
                        )
                    await self._follow(call)
                finally:
                    call.cancel()
                    self._call = None
            except asyncio.CancelledError:
                raise
            except (grpc.aio.AioRpcError, EtcdError) as e:
                client.rotate(i)
                why = e.details() if isinstance(e, grpc.aio.AioRpcError) else str(e)
                log.debug("etcd watch interrupted: %s", why)
                await asyncio.sleep(0.5)
            except Exception:
                log.exception("etcd watch failed")
                await asyncio.sleep(1.0)

    async def _follow(
        self, call: grpc.aio.StreamStreamCall[rpc_pb2.WatchRequest, rpc_pb2.WatchResponse]
    ) -> None:
        layout = self.store.layout
        nodes = layout.nodes
        images = layout.cluster["images"].root.encode()
        blobs = layout.cluster["blobs"].root.encode()
        while True:
            resp = await call.read()
            if not isinstance(resp, rpc_pb2.WatchResponse):
                raise EtcdError("watch stream ended")
            if resp.canceled or resp.compact_revision:
                self._rev = 0
                raise EtcdError(f"watch canceled: {resp.cancel_reason or 'compacted'}")
            changed = False
            live = set(self.live_nodes)
            for ev in resp.events:
                key = ev.kv.key
                self._rev = max(self._rev, ev.kv.mod_revision)
                if key.startswith(nodes.root.encode()):
                    name = nodes.fields(key)[0]
                    if ev.type == DELETE:
                        live.discard(name)
                    else:
                        live.add(name)
                elif key.startswith(images):
                    # A deleted or rewritten image may free what it referenced.
                    changed = changed or ev.type == DELETE or ev.kv.version > 1
                elif key.startswith(blobs):
                    changed = changed or (ev.type != DELETE and ev.kv.version > 1)
            self._set_nodes(live)
            if changed:
                self._notify()
