"""Pull once per cluster: nodes pulling an image from their peers vs from the registry.

    sudo .venv/bin/python tests/bench/bench_peer.py [--layers 4] [--layer-mb 50] [--json out.json]

One run sets up a real registry on loopback (Debian's docker-registry), one
etcd member, three berthd nodes A, B, C on it with the peer plugin (mutual
TLS), and two standalone berthd nodes R1, R2 (SQLite, no peers).  An image
of ``--layers`` random, uncompressed layers of ``--layer-mb`` MiB (plus a
busybox layer) is pushed from A, then pulled (``ctr images pull``, which
unpacks too) by:

- R1 and R2: every blob comes from the registry;
- A: from the registry (the first node of the cluster);
- B and C: from their peers (A, then A or B).

Prints each pull's time (fetch and unpack), the blob bytes the registry sent
for it (its access log), the bytes the node fetched from peers and the time
those fetches took, summed (its metrics).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.peer.certs import CertAuthority
from tests.peer.fleet import FleetNode, push_from
from tests.support import short_tmpdir
from tests.support.etcd import etcd_cluster
from tests.support.oci import blob_digests, build_image_tar, random_layers
from tests.support.registry import Registry

IMAGE = "docker.io/library/bench-peer:1"
MiB = 1 << 20


@dataclass(frozen=True)
class Pull:
    node: str
    source: str
    seconds: float
    registry_bytes: int
    peer_bytes: int
    fetch_seconds: float  # summed durations of the node's fetches from peers


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--layer-mb", type=int, default=50)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    rows: list[Pull] = []
    with (
        short_tmpdir("bbp") as d,
        etcd_cluster(d / "etcd") as etcd,
        Registry(d / "registry") as registry,
        contextlib.ExitStack() as stack,
    ):
        ca = CertAuthority(d / "pki")
        prefix = f"/berthd-bench-{uuid.uuid4().hex[:8]}"
        nodes = {n: FleetNode(d, n, etcd.endpoints, prefix, ca.issue(n)) for n in ("a", "b", "c")}
        nodes |= {n: FleetNode(d, n, [], "", None) for n in ("r1", "r2")}
        for n in nodes.values():
            stack.callback(n.stop)
            n.start()
        tar = build_image_tar(
            d / "img.tar",
            IMAGE,
            layers=random_layers(args.layers, args.layer_mb * MiB),
            compression="none",
        )
        blobs = blob_digests(tar)
        remote = f"{registry.host}/bench/peer:1"
        push_from(nodes["a"], tar, IMAGE, remote, list(blobs))
        for name, source in (
            ("r1", "registry"),
            ("r2", "registry"),
            ("a", "registry (first in cluster)"),
            ("b", "peers"),
            ("c", "peers"),
        ):
            n = nodes[name]
            sent = registry.bytes_served()
            fetched = n.metric("berthd_content_peer_fetched_bytes_total")
            fetching = n.metric("berthd_content_peer_fetch_duration_seconds_sum", result="ok")
            seconds = n.pull(remote)
            rows.append(
                Pull(
                    name,
                    source,
                    seconds,
                    registry.bytes_served() - sent,
                    int(n.metric("berthd_content_peer_fetched_bytes_total") - fetched),
                    n.metric("berthd_content_peer_fetch_duration_seconds_sum", result="ok")
                    - fetching,
                )
            )
    total = sum(blobs.values())
    print(f"image: {len(blobs)} blobs, {total / MiB:.1f} MiB")
    print(
        f"{'node':6}{'source':30}{'pull s':>10}{'registry MiB':>14}{'peers MiB':>12}{'fetch s':>10}"
    )
    for r in rows:
        print(
            f"{r.node:6}{r.source:30}{r.seconds:10.2f}"
            f"{r.registry_bytes / MiB:14.1f}{r.peer_bytes / MiB:12.1f}{r.fetch_seconds:10.2f}"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"image_bytes": total, "pulls": [asdict(r) for r in rows]}, indent=2)
        )


if __name__ == "__main__":
    main()
