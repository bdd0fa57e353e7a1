"""Pull once per cluster: three real berthd nodes on one etcd, a real registry.

An image with ~200 MB of layers is pushed from node A; A pulls it (the
registry sends every blob once); B and C pull and run it, fetching the
layers from their peers: the registry sends nothing more.  Then a node dies
while another fetches from it, and the fetch finishes from a third node
(or fails clean, and a retry finishes).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from api.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from tests.peer.certs import NodeCert
from tests.peer.daemon import plugin_exports, secure_channel
from tests.peer.fleet import FleetNode, push_from
from tests.support import need_binary, need_root, short_tmpdir
from tests.support.berthd import need_embedded_plugins, wait_until
from tests.support.etcd import etcd_cluster
from tests.support.oci import blob_digests, build_image_tar, manifest_layers, random_layers
from tests.support.registry import Registry, need_registry

pytestmark = [
    pytest.mark.root,
    pytest.mark.containerd,
    pytest.mark.runc,
    pytest.mark.overlay,
    pytest.mark.etcd,
    pytest.mark.slow,
]

MiB = 1 << 20
BIG = "docker.io/library/berth-big:1"
KILL = "docker.io/library/berth-kill:1"


@dataclass
class Fleet:
    workdir: Path
    registry: Registry
    nodes: dict[str, FleetNode]

    def remote(self, name: str) -> str:
        return f"{self.registry.host}/berth/{name}:1"


@pytest.fixture(scope="module")
def fleet(node_certs: dict[str, NodeCert]) -> Iterator[Fleet]:
    need_root()
    need_registry()
    need_binary("ctr", "runc", "containerd-shim-runc-v2", "etcd")
    need_embedded_plugins()
    with (
        short_tmpdir("bfl") as d,
        etcd_cluster(d / "etcd") as etcd,
        Registry(d / "registry") as registry,
    ):
        prefix = f"/berthd-fleet-{uuid.uuid4().hex[:8]}"
        nodes = {n: FleetNode(d, n, etcd.endpoints, prefix, node_certs[n]) for n in ("a", "b", "c")}
        try:
            for n in nodes.values():
                n.start()
            yield Fleet(d, registry, nodes)
        finally:
            for n in nodes.values():
                n.stop()


def test_the_registry_serves_each_layer_once(fleet: Fleet) -> None:
    a, b, c = (fleet.nodes[n] for n in "abc")
    tar = build_image_tar(
        fleet.workdir / "big.tar", BIG, layers=random_layers(4, 50 * MiB), compression="none"
    )
    blobs = blob_digests(tar)
    layers = manifest_layers(tar)  # busybox and four of random data
    assert len(layers) == 5 and sum(blobs[d] for d in layers) > 200 * MiB
    remote = fleet.remote("big")
    push_from(a, tar, BIG, remote, list(blobs))
    assert fleet.registry.blob_gets() == []
    took = {"a": a.pull(remote)}
    gets = fleet.registry.gets_by_digest()
    assert all(gets[d] == 1 for d in layers), gets
    served_after_a = fleet.registry.bytes_served()
    for n in (b, c):
        took[n.name] = n.pull(remote)
        assert n.ctr("run", "--rm", remote, f"{n.name}-true", "true").returncode == 0
    print("\npull seconds:", {k: round(v, 2) for k, v in took.items()})
    # The registry sent every layer exactly once, to A; B and C took them from peers.
    gets = fleet.registry.gets_by_digest()
    assert all(gets[d] == 1 for d in layers), gets
    assert fleet.registry.bytes_served() == served_after_a
    for n in (b, c):
        assert n.metric("berthd_content_peer_fetched_bytes_total") >= sum(blobs[d] for d in layers)
        assert n.metric("berthd_content_client_written_bytes_total") == 0
        assert "complete" in n.ctr("images", "check").stdout.split(remote, 1)[1].splitlines()[0]
        for d in layers:
            assert n.stored_digest(d) == d
        assert n.content_digest(layers[0]) == layers[0]  # and through the Content API
    assert a.metric("berthd_content_peer_served_bytes_total") >= sum(blobs[d] for d in layers)


def test_a_holder_dying_mid_fetch(fleet: Fleet) -> None:
    a, b, c = (fleet.nodes[n] for n in "abc")
    tar = build_image_tar(
        fleet.workdir / "kill.tar", KILL, layers=random_layers(2, 100 * MiB), compression="none"
    )
    blobs = blob_digests(tar)
    layers = manifest_layers(tar)
    remote = fleet.remote("kill")
    push_from(a, tar, KILL, remote, list(blobs))
    big = [d for d in layers if blobs[d] >= 100 * MiB]  # busybox's, b holds already
    assert len(big) == 2
    a.pull(remote)
    c.pull(remote)  # from a: now a and c hold every layer
    for d in big:
        assert a.holds(d) and c.holds(d) and not b.holds(d)
    before = b.metric("berthd_content_peer_fetched_bytes_total")
    argv = ["ctr", "--address", b.berthd.address, "images", "pull", "--plain-http", remote]
    pulling = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Kill a as soon as b has 20 MiB of a big layer from it.
        wait_until(
            lambda: b.metric("berthd_content_peer_fetched_bytes_total") - before >= 20 * MiB,
            120,
            "b fetching",
        )
        a.berthd.kill9()
        out, _ = pulling.communicate(timeout=300)
    finally:
        if pulling.poll() is None:
            pulling.kill()
            pulling.wait()
    if pulling.returncode != 0:
        # Failed clean: nothing partial is left, and a retry completes.
        assert "Unavailable" in out or "unavailable" in out, out
        assert b.berthd.ctr("content", "active").stdout.splitlines()[1:] == []
        b.pull(remote)
    assert "complete" in b.ctr("images", "check").stdout.split(remote, 1)[1].splitlines()[0]
    for d in layers:
        assert b.stored_digest(d) == d
    assert b.ctr("run", "--rm", remote, "b-after-kill", "true").returncode == 0
    gets = fleet.registry.gets_by_digest()
    assert all(gets[d] == 1 for d in layers), gets
    print(
        "\nkill test:",
        "pull completed" if pulling.returncode == 0 else "pull failed clean, retry completed",
        f"resumes={b.metric('berthd_content_peer_fetch_resumes_total'):g}",
        f"failed={b.metric('berthd_content_peer_fetches_total', result='failed'):g}",
    )


def test_the_peer_port_refuses_strangers_and_writes(
    fleet: Fleet, node_certs: dict[str, NodeCert]
) -> None:
    c = fleet.nodes["c"]
    address = plugin_exports(c.berthd)["address"]
    creds = grpc.ssl_channel_credentials(node_certs["c"].ca.read_bytes())  # no client certificate
    digest = "sha256:" + "0" * 64
    with grpc.secure_channel(address, creds) as ch:
        with pytest.raises(grpc.RpcError) as info:
            content_pb2_grpc.ContentStub(ch).Info(
                content_pb2.InfoRequest(digest=digest), timeout=10
            )
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    with secure_channel(address, node_certs["a"]) as ch:
        stub = content_pb2_grpc.ContentStub(ch)
        req = content_pb2.WriteContentRequest(
            action=content_pb2.COMMIT, ref="forged", total=1, expected=digest, data=b"x"
        )
        with pytest.raises(grpc.RpcError) as info:
            for _ in stub.Write(iter([req]), timeout=10):
                pass
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
