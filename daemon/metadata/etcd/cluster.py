"""Read-only questions about the cluster: which nodes exist, which are live, who holds a blob.

A node counts as a holder of a blob only while it is live (its lease-bound
key exists): ``holders`` lists the nodes that recorded the bytes and says
which of them are live now.  ``berthd cluster ls`` prints ``nodes``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from api.etcd.etcdserverpb import rpc_pb2
from daemon.metadata.etcd.client import EtcdClient
from daemon.metadata.etcd.layout import Layout, range_end


@dataclass(frozen=True)
class NodeInfo:
    name: str
    live: bool
    host: str = ""
    pid: int = 0
    blobs: int = 0


@dataclass(frozen=True)
class Holder:
    node: str
    live: bool


class ClusterView:
    def __init__(self, client: EtcdClient, layout: Layout, timeout: float) -> None:
        self.client = client
        self.layout = layout
        self.timeout = timeout

    async def _range(self, prefix: bytes, *, keys_only: bool = False, count: bool = False) -> Any:
        deadline = time.monotonic() + self.timeout
        return await self.client.range(
            rpc_pb2.RangeRequest(
                key=prefix, range_end=range_end(prefix), keys_only=keys_only, count_only=count
            ),
            deadline,
        )

    async def live(self) -> dict[str, dict[str, object]]:
        space = self.layout.nodes
        resp = await self._range(space.prefix(()))
        out: dict[str, dict[str, object]] = {}
        for kv in resp.kvs:
            try:
                info = json.loads(kv.value)
            except ValueError:
                info = {}
            out[space.fields(kv.key)[0]] = info
        return out

    async def nodes(self) -> list[NodeInfo]:
        """Every node that ever joined, live or not, with how many blobs it holds."""
        members = await self._range(self.layout.members.prefix(()), keys_only=True)
        live = await self.live()
        names = {self.layout.members.fields(kv.key)[0] for kv in members.kvs} | set(live)
        out = []
        for name in sorted(names):
            held = await self._range(self.layout.node_tables(name)["blobs"].prefix(()), count=True)
            info = live.get(name, {})
            out.append(
                NodeInfo(
                    name,
                    name in live,
                    str(info.get("host", "")),
                    int(str(info.get("pid", 0))),
                    int(held.count),
                )
            )
        return out

    async def holders(self, namespace: str, digest: str) -> list[Holder]:
        space = self.layout.cluster["holders"]
        resp = await self._range(space.prefix((namespace, digest)), keys_only=True)
        live = await self.live()
        return [
            Holder(node, node in live)
            for node in sorted(space.fields(kv.key)[-1] for kv in resp.kvs)
        ]

    async def problems(self) -> list[str]:
        """What breaks the content index's invariants (each operation keeps
        them in one transaction, so this stays empty whatever was killed when):
        a record without holders, a holder without its record or its node's
        hold, a hold without its holder key."""
        L = self.layout
        records_space, holders_space = L.cluster["blobs"], L.cluster["holders"]
        recs = {
            records_space.fields(kv.key)
            for kv in (await self._range(records_space.prefix(()), keys_only=True)).kvs
        }
        holders = {
            holders_space.fields(kv.key)
            for kv in (await self._range(holders_space.prefix(()), keys_only=True)).kvs
        }
        members = await self._range(L.members.prefix(()), keys_only=True)
        holds: set[tuple[str, ...]] = set()
        for kv in members.kvs:
            node = L.members.fields(kv.key)[0]
            space = L.node_tables(node)["blobs"]
            found = await self._range(space.prefix(()), keys_only=True)
            holds |= {(*space.fields(k.key), node) for k in found.kvs}
        out = [f"blob {ns} {d} has no holder" for ns, d in sorted(recs - {h[:2] for h in holders})]
        out += [f"holder {h} has no blob record" for h in sorted(holders) if h[:2] not in recs]
        out += [f"holder {h} has no hold on its node" for h in sorted(holders - holds)]
        out += [f"hold {h} has no holder key" for h in sorted(holds - holders)]
        return out
