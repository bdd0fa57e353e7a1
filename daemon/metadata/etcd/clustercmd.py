"""``berthd cluster``: look at the etcd cluster the metadata plugin's config names.

berthd cluster ls                    every node: live or not, host, pid, blobs held
berthd cluster holders NS DIGEST     the nodes that hold a blob (and which are live)
"""

from __future__ import annotations

from typing import TextIO

from api import errdefs
from daemon.metadata.etcd.client import EtcdClient, Unreachable
from daemon.metadata.etcd.cluster import ClusterView
from daemon.metadata.etcd.layout import Layout
from daemon.metadata.etcd.settings import EtcdSettings


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")


async def run(settings: EtcdSettings, command: str, args: list[str], out: TextIO) -> None:
    """Raises Unavailable when etcd does not answer."""
    client = EtcdClient(settings)
    view = ClusterView(client, Layout(settings.prefix, settings.node), settings.request_timeout)
    try:
        if command == "ls":
            rows = [["NODE", "LIVE", "HOST", "PID", "BLOBS"]]
            for n in await view.nodes():
                live = "yes" if n.live else "no"
                pid = str(n.pid) if n.live and n.pid else "-"
                rows.append([n.name, live, n.host or "-", pid, str(n.blobs)])
            _table(rows, out)
        elif command == "holders":
            namespace, digest = args
            rows = [["NODE", "LIVE"]]
            rows += [
                [h.node, "yes" if h.live else "no"] for h in await view.holders(namespace, digest)
            ]
            _table(rows, out)
        elif command == "check":
            problems = await view.problems()
            if problems:
                raise errdefs.FailedPrecondition("; ".join(problems))
            out.write("ok\n")
        else:
            raise errdefs.InvalidArgument(f"unknown cluster command {command!r}")
    except Unreachable as e:
        raise errdefs.Unavailable(f"etcd {client.describe()}: {e}") from None
    finally:
        await client.close()
