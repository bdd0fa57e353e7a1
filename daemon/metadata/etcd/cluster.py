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
