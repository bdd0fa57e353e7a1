"""A fleet for the peer end-to-end tests and benchmark.

Real berthd nodes on one etcd, each on its embedded default (content store,
overlayfs snapshotter and differ as supervised plugins) with the etcd
metadata backend, the peer plugin over mutual TLS on a loopback port and a
metrics port of its own; a real registry on loopback.  Helpers push an
image from a node, pull it with the real ``ctr``, and read what each node's
metrics and content say.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.peer.certs import NodeCert
from tests.support import free_port
from tests.support.berthd import Berthd, embedded_toml, wait_until

PEER_URI = "io.berthd.content.v1.peer"
CONTENT_ROOT = "io.containerd.content.v1.content"
# Short, so a killed node stops counting as a holder within seconds.
LEASE_TTL = "3s"


def node_toml(
    d: Path, name: str, endpoints: list[str], prefix: str, cert: NodeCert | None, metrics: str
) -> str:
    """The embedded default, with etcd metadata and the peer plugin (no config
    for them when ``endpoints`` is empty: a standalone node on SQLite)."""
    text = embedded_toml(d, metrics)
    if endpoints:
        text += (
            '\n[plugins."io.containerd.metadata.v1.berthd"]\n'
            '  backend = "etcd"\n'
            f"  endpoints = {json.dumps(endpoints)}\n"
            f'  prefix = "{prefix}"\n'
            f'  node = "{name}"\n'
            f'  lease_ttl = "{LEASE_TTL}"\n'
            f'\n[plugins."{PEER_URI}"]\n'
            '  peer_address = "127.0.0.1:0"\n'
        )
        if cert is not None:
            text += "".join(f"  {line}\n" for line in cert.toml().splitlines())
    return text


class FleetNode:
    def __init__(
        self,
        root: Path,
        name: str,
        endpoints: list[str],
        prefix: str,
        cert: NodeCert | None,
    ) -> None:
        self.name = name
        self.metrics = f"127.0.0.1:{free_port()}"
        d = root / name
        self.berthd = Berthd(d, node_toml(d, name, endpoints, prefix, cert, self.metrics))

    def start(self) -> FleetNode:
        self.berthd.start()
        return self

    def ctr(self, *args: str, namespace: str = "default") -> subprocess.CompletedProcess[str]:
        return self.berthd.ctr(*args, namespace=namespace)

    def page(self) -> str:
        with urllib.request.urlopen(f"http://{self.metrics}/v1/metrics", timeout=10) as r:
            text: str = r.read().decode()
        return text

    def metric(self, name: str, **labels: str) -> float:
        """A sample of the node's own families (0 when absent)."""
        for fam in text_string_to_metric_families(self.page()):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return 0.0

    def pull(self, remote: str, namespace: str = "default") -> float:
        """``ctr images pull --plain-http``; returns the seconds it took."""
        t = time.perf_counter()
        self.ctr("images", "pull", "--plain-http", remote, namespace=namespace)
        return time.perf_counter() - t

    def content_digest(self, digest: str, namespace: str = "default") -> str:
        """The digest of what the node's Content API returns for ``digest``
        (``ctr content get``: slow for large blobs, it reads in small pieces)."""
        out = subprocess.run(
            ["ctr", "--address", self.berthd.address, "-n", namespace, "content", "get", digest],
            capture_output=True,
            check=True,
            timeout=120,
        )
        return "sha256:" + hashlib.sha256(out.stdout).hexdigest()

    def stored_digest(self, digest: str) -> str:
        """The digest of the bytes the node's content store holds under ``digest``."""
        h = hashlib.sha256()
        with open(self._blob(digest), "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return "sha256:" + h.hexdigest()

    def _blob(self, digest: str) -> Path:
        return self.berthd.root / CONTENT_ROOT / "blobs" / "sha256" / digest.split(":", 1)[1]

    def holds(self, digest: str) -> bool:
        """The node's content store has the bytes (not only the cluster's record)."""
        return self._blob(digest).exists()

    def stop(self) -> None:
        self.berthd.__exit__(None, None, None)


def push_from(node: FleetNode, tar: Path, image: str, remote: str, blobs: list[str]) -> None:
    """Import ``tar`` on ``node`` in a scratch namespace, push it to ``remote``,
    and remove it again: afterwards the node holds none of ``blobs`` it did
    not hold before."""
    new = [d for d in blobs if not node.holds(d)]
    node.ctr("images", "import", "--no-unpack", str(tar), namespace="seed")
    node.ctr("images", "push", "--plain-http", remote, image, namespace="seed")
    node.ctr("images", "rm", "--sync", image, namespace="seed")
    wait_until(
        lambda: not any(node.holds(d) for d in new), 60, f"{node.name} dropping the pushed blobs"
    )
