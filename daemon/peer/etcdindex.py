"""``ClusterIndex`` over the etcd metadata store's keys (``daemon.metadata.etcd.layout``).

The content index is the store's: ``cluster/blobs/<ns>/<digest>`` is a
blob's record, ``cluster/holders/<ns>/<digest>/<node>`` names each node that
has its bytes (written when that node records the blob, with the time it
did), ``nodes/<node>`` is a live node's key under its etcd lease, whose
value carries the node's peer address once it is published.  Every
question is one read-only transaction at one revision; a label change is
one guarded transaction, retried on conflict, like every metadata write.

Holders are tried oldest first: the node that has held a blob longest (the
first to pull it) is the one most likely to still have it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from api import errdefs
from api.etcd.etcdserverpb import rpc_pb2
from daemon.metadata import records
from daemon.metadata.content import blob_info
from daemon.metadata.etcd import values
from daemon.metadata.etcd.client import EtcdError
from daemon.metadata.etcd.store import EtcdStore
from daemon.metadata.etcd.tx import EtcdTx
from daemon.metadata.remote import LabelChange
from daemon.peer.index import Holder
from services.content.store import Info

log = logging.getLogger(__name__)


def _json(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class EtcdClusterIndex:
    def __init__(self, store: EtcdStore) -> None:
        self.store = store
        layout = store.layout
        self._records = layout.cluster["blobs"]
        self._holders = layout.cluster["holders"]
        self._holds = layout.local["blobs"]
        self._nodes = layout.nodes
        self._retry: asyncio.Task[None] | None = None

    @property
    def node(self) -> str:
        return self.store.node

    def _live_holders(self, tx: EtcdTx, ns: str, digest: str) -> list[tuple[int, str, str]]:
        """(since, node, peer address) of the live holders other than this node."""
        kv = tx.kv
        out = []
        for key, raw in kv.scan_exact(self._holders.prefix((ns, digest))).items():
            node = self._holders.fields(key)[-1]
            if node == self.node:
                continue
            live = kv.get(self._nodes.key((node,)))
            if live is None:
                continue
            since = _json(raw).get("since", 0)
            out.append(
                (int(since) if isinstance(since, int) else 0, node, _json(live).get("peer", ""))
            )
        return sorted(out)

    async def lookup(self, ns: str, digest: str) -> Info | None:
        def fn(tx: EtcdTx) -> records.Blob | None:
            raw = tx.kv.get(self._records.key((ns, digest)))
            if raw is None or not self._live_holders(tx, ns, digest):
                return None
            blob: records.Blob = values.decode(records.Blob, raw)
            return blob

        blob = await self.store.view(fn)
        return None if blob is None else blob_info(blob)

    async def update(self, ns: str, digest: str, change: LabelChange) -> Info | None:
        def fn(tx: EtcdTx) -> records.Blob | None:
            key = self._records.key((ns, digest))
            raw = tx.kv.get(key)
            if raw is None:
                return None
            blob: records.Blob = values.decode(records.Blob, raw)
            new = dataclasses.replace(
                blob, labels=dict(change(blob.labels)), updated_at=records.now_ns()
            )
            tx.kv.put(key, values.encode(new))
            return new

        blob = await self.store.update(fn)
        return None if blob is None else blob_info(blob)

    async def holders(self, ns: str, digest: str) -> Sequence[Holder]:
        found = await self.store.view(lambda tx: self._live_holders(tx, ns, digest))
        return [Holder(node, peer) for _, node, peer in found if peer]

    async def add_holder(self, ns: str, digest: str) -> None:
        """Recording the blob here (the store's blob put) named this node a
        holder; this repairs the holder key should it be missing."""

        def fn(tx: EtcdTx) -> None:
            kv = tx.kv
            if kv.get(self._holds.key((ns, digest))) is None:
                raise errdefs.FailedPrecondition(
                    f"node {self.node} records no content {digest} in namespace {ns}"
                )
            key = self._holders.key((ns, digest, self.node))
            if kv.get(key) is None:
                kv.put(key, json.dumps({"since": records.now_ns()}).encode())

        await self.store.update(fn)

    async def publish(self, address: str) -> None:
        """Put ``address`` in this node's live key, and in every later claim of it.

        When etcd does not answer now, it is retried in the background until
        it does (``close`` stops that).
        """
        self.store.session.peer = address
        if not await self._publish(address):
            self._retry = asyncio.create_task(self._keep_publishing(address), name="peer-publish")

    async def _keep_publishing(self, address: str) -> None:
        while True:
            await asyncio.sleep(1.0)
            if await self._publish(address):
                return

    async def _publish(self, address: str) -> bool:
        session = self.store.session
        key = self._nodes.key((self.node,))
        deadline = time.monotonic() + self.store.settings.request_timeout
        try:
            await self.store.ensure_ready(deadline)
            lease = session.lease
            resp = await self.store.client.txn(
                rpc_pb2.TxnRequest(
                    # Only over our own live key: one that lapsed is claimed
                    # again by the session's keep-alive, with the address.
                    compare=[
                        rpc_pb2.Compare(
                            target=rpc_pb2.Compare.LEASE,
                            result=rpc_pb2.Compare.EQUAL,
                            key=key,
                            lease=lease,
                        )
                    ],
                    success=[
                        rpc_pb2.RequestOp(
                            request_put=rpc_pb2.PutRequest(
                                key=key, value=json.dumps(session.identity).encode(), lease=lease
                            )
                        )
                    ],
                ),
                deadline,
            )
        except (EtcdError, errdefs.ErrdefsError) as e:
            log.warning(
                "etcd: node %s: cannot publish peer address %s yet: %s", self.node, address, e
            )
            return False
        if resp.succeeded:
            log.info("etcd: node %s publishes peer content at %s", self.node, address)
        else:
            log.info("etcd: node %s: its next live key carries peer address %s", self.node, address)
        return True

    async def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
            self._retry = None
