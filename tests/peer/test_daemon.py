"""The peer plugin in a real berthd (SQLite, one node: it serves, it does not fetch)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.request
from collections.abc import Iterator

import grpc
import pytest

from api.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from tests.daemon.test_task_metrics import promtool_findings
from tests.metadata.berthd import metadata_berthd
from tests.peer.certs import CertAuthority, NodeCert
from tests.peer.daemon import (
    peer_address,
    peer_berthd,
    peer_toml,
    plugin_exports,
    secure_channel,
)
from tests.support import free_port, need_root, short_tmpdir
from tests.support.berthd import Berthd
from tests.support.containerd import need_containerd
from tests.support.oci import build_image_tar

pytestmark = [pytest.mark.containerd, pytest.mark.root]

IMAGE = "docker.io/library/berth-peer:latest"


@pytest.fixture(scope="module")
def node(node_certs: dict[str, NodeCert]) -> Iterator[Berthd]:
    need_containerd()
    need_root()
    metrics = free_port()
    with (
        short_tmpdir("bpd") as d,
        peer_berthd(d, node_certs["a"], f'[metrics]\naddress = "127.0.0.1:{metrics}"\n') as b,
    ):
        b.metrics_port = metrics  # type: ignore[attr-defined]
        yield b


@pytest.fixture(scope="module")
def layer(node: Berthd) -> tuple[str, int]:
    """An image imported on the node (not unpacked); its first layer's digest and size."""
    tar = build_image_tar(node.workdir / "img.tar", IMAGE, layers=[{"x": os.urandom(300_000)}])
    node.ctr("images", "import", "--no-unpack", str(tar))
    with tarfile.open(tar) as t:
        biggest = max(
            (m for m in t.getmembers() if m.name.startswith("blobs/")), key=lambda m: m.size
        )
    return "sha256:" + biggest.name.rsplit("/", 1)[1], biggest.size


def test_the_plugin_serves_on_its_own_port(node: Berthd) -> None:
    exports = plugin_exports(node)
    assert exports["tls"] == "mutual"
    assert exports["address"].startswith("127.0.0.1:")
    assert not exports["address"].endswith(":0")
    out = node.ctr("plugins", "ls").stdout
    assert any(r.split()[:3] == ["io.berthd.content.v1", "peer", "-"] and r.split()[-1] == "ok"
               for r in out.splitlines())  # fmt: skip
    assert "without a cluster index" not in node.output()
    assert "keeps no cluster index" in node.output()


def _read_all(ch: grpc.Channel, digest: str) -> bytes:
    stub = content_pb2_grpc.ContentStub(ch)
    return b"".join(r.data for r in stub.Read(content_pb2.ReadContentRequest(digest=digest)))


def test_a_peer_reads_the_node_content(
    node: Berthd, layer: tuple[str, int], node_certs: dict[str, NodeCert]
) -> None:
    digest, _ = layer
    with secure_channel(peer_address(node), node_certs["b"]) as ch:
        stub = content_pb2_grpc.ContentStub(ch)
        info = stub.Info(content_pb2.InfoRequest(digest=digest), timeout=10).info
        data = _read_all(ch, digest)
    assert len(data) == info.size == layer[1]
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest


def test_a_peer_without_the_cluster_certificate_is_refused(
    node: Berthd, layer: tuple[str, int], rogue_ca: CertAuthority, node_certs: dict[str, NodeCert]
) -> None:
    digest, _ = layer
    address = peer_address(node)
    for creds in (
        grpc.ssl_channel_credentials(node_certs["b"].ca.read_bytes()),
        grpc.ssl_channel_credentials(
            node_certs["b"].ca.read_bytes(),
            rogue_ca.issue("mallory").key.read_bytes(),
            rogue_ca.issue("mallory2").cert.read_bytes(),
        ),
    ):
        with grpc.secure_channel(address, creds) as ch:
            stub = content_pb2_grpc.ContentStub(ch)
            with pytest.raises(grpc.RpcError) as info:
                stub.Info(content_pb2.InfoRequest(digest=digest), timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    with grpc.insecure_channel(address) as ch:
        with pytest.raises(grpc.RpcError) as info:
            content_pb2_grpc.ContentStub(ch).Info(
                content_pb2.InfoRequest(digest=digest), timeout=10
            )
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


def test_a_forged_write_is_permission_denied(
    node: Berthd, layer: tuple[str, int], node_certs: dict[str, NodeCert]
) -> None:
    digest, _ = layer
    data = b"forged content\n"
    forged = "sha256:" + hashlib.sha256(data).hexdigest()
    with secure_channel(peer_address(node), node_certs["b"]) as ch:
        stub = content_pb2_grpc.ContentStub(ch)
        req = content_pb2.WriteContentRequest(
            action=content_pb2.COMMIT, ref="forged", total=len(data), expected=forged, data=data
        )
        with pytest.raises(grpc.RpcError) as info:
            for _ in stub.Write(iter([req]), timeout=10):
                pass
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
        with pytest.raises(grpc.RpcError) as info:
            stub.Delete(content_pb2.DeleteContentRequest(digest=digest), timeout=10)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    # The node still has its blob and nothing forged, in any namespace.
    assert digest in node.ctr("content", "ls").stdout
    assert forged not in node.ctr("content", "ls").stdout
    assert node.ctr("content", "active").stdout.splitlines()[1:] == []


def test_metrics_count_peer_traffic(node: Berthd, layer: tuple[str, int]) -> None:
    port = node.metrics_port  # type: ignore[attr-defined]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/metrics", timeout=10) as r:
        page = r.read().decode()
    served = [
        float(line.split()[-1])
        for line in page.splitlines()
        if line.startswith("berthd_content_peer_served_bytes_total")
    ]
    assert served and served[0] >= layer[1]
    for family in (
        "berthd_content_client_written_bytes_total",
        "berthd_content_peer_fetched_bytes_total",
        'berthd_content_peer_fetch_duration_seconds_bucket{le="0.005",result="ok"}',
    ):
        assert family in page


def test_plain_tcp_is_for_loopback_only() -> None:
    need_containerd()
    with short_tmpdir("bpp") as d, peer_berthd(d, None) as b:
        assert plugin_exports(b)["tls"] == "none (loopback)"
        assert "over plain TCP, without authentication" in b.output()
    with (
        short_tmpdir("bpq") as d,
        metadata_berthd(
            d, peer_toml(None, "0.0.0.0:0") + 'advertise_address = "10.1.2.3:7000"\n'
        ) as b,
    ):
        with pytest.raises(
            AssertionError, match=r"peer_address: 0\.0\.0\.0 is not a loopback address: peers need"
        ):
            plugin_exports(b)
        # The daemon runs without it.
        assert b.ctr("version").returncode == 0


@pytest.mark.promtool
def test_promtool_accepts_the_peer_families(node: Berthd) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("needs promtool (Debian package prometheus)")
    port = node.metrics_port  # type: ignore[attr-defined]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/metrics", timeout=10) as r:
        page = r.read()
    ours = [
        line
        for line in promtool_findings(page)
        if "berthd_content_peer" in line or "berthd_content_client" in line
    ]
    assert ours == []
