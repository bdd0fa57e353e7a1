"""Two berthd nodes on one etcd, driven by the real ``ctr``.

Each node has its own root, sockets and plugin processes (content, native
snapshotter, differ); they share one etcd (the session's, under a prefix of
this module's).  Namespaces, images and the content index are the
cluster's; containers, snapshots and leases stay with their node; a node
whose lease lapses stops counting as a holder.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.metadata.berthd import cluster_cli, etcd_toml, metadata_berthd, metadata_exports
from tests.support import need_binary, need_root, short_tmpdir
from tests.support.berthd import Berthd, wait_until
from tests.support.containerd import need_containerd
from tests.support.oci import build_image_tar

pytestmark = [pytest.mark.etcd, pytest.mark.containerd, pytest.mark.root]

SN = ("--snapshotter", "native")
IMAGE = "docker.io/library/cluster-test:1"


class Nodes:
    def __init__(self, root: Path, endpoints: list[str]) -> None:
        self.root = root
        self.prefix = f"/cl-{uuid.uuid4().hex[:8]}"
        self.a = metadata_berthd(root / "a", etcd_toml(endpoints, self.prefix, "a", lease_ttl="2s"))
        self.b = metadata_berthd(root / "b", etcd_toml(endpoints, self.prefix, "b", lease_ttl="2s"))

    def image(self, name: str) -> Path:
        """An image tar whose blobs no other test shares."""
        return build_image_tar(
            self.root / f"{name}.tar",
            IMAGE,
            layers=[{"etc/name": name.encode()}, {"etc/two": name.encode() * 500}],
            busybox=False,
        )


@pytest.fixture(scope="module")
def nodes(etcd_endpoints: list[str]) -> Iterator[Nodes]:
    need_containerd()
    need_root()
    with short_tmpdir("bc") as d:
        n = Nodes(d, etcd_endpoints)
        with n.a, n.b:
            n.a.wait_startup_gc()
            n.b.wait_startup_gc()
            yield n


def rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()[1:] if line.strip()]


def blobs(b: Berthd) -> set[str]:
    root = b.workdir / "content" / "blobs" / "sha256"
    return {f"sha256:{p.name}" for p in root.iterdir()} if root.exists() else set()


def image_digests(b: Berthd, ns: str) -> set[str]:
    """The blobs ``b`` shows in ``ns``, after a synchronous collection (an
    import also stores the OCI index, which nothing references afterwards)."""
    b.ctr("leases", "create", "--id", "settle", namespace=ns)
    b.ctr("leases", "rm", "--sync", "settle", namespace=ns)
    return {r[0] for r in rows(b.ctr("content", "ls", namespace=ns).stdout)}


def test_both_nodes_are_live_and_listed(nodes: Nodes) -> None:
    for b in (nodes.a, nodes.b):
        wait_until(lambda b=b: metadata_exports(b).get("nodes") == "a,b", 20, "both nodes live")
        exports = metadata_exports(b)
        assert (exports["backend"], exports["state"]) == ("etcd", "ok")
    listed = cluster_cli(nodes.a, "ls")
    assert listed.returncode == 0, listed.stderr
    table = {r[0]: r[1:] for r in rows(listed.stdout)}
    assert table["a"][0] == table["b"][0] == "yes"
    assert table["a"][2] == str(nodes.a.pid) and table["b"][2] == str(nodes.b.pid)


def test_namespaces_created_on_b_are_seen_on_a(nodes: Nodes) -> None:
    nodes.b.ctr("namespaces", "create", "from-b", "team=blue")
    listed = {r[0]: r[1:] for r in rows(nodes.a.ctr("namespaces", "ls").stdout)}
    assert listed["from-b"] == ["team=blue"]
    nodes.a.ctr("namespaces", "label", "from-b", "team=red")
    listed = {r[0]: r[1:] for r in rows(nodes.b.ctr("namespaces", "ls").stdout)}
    assert listed["from-b"] == ["team=red"]
    nodes.a.ctr("namespaces", "rm", "from-b")
    assert "from-b" not in nodes.b.ctr("namespaces", "ls", "-q").stdout.split()


def test_an_image_imported_on_a_is_listed_on_b(nodes: Nodes) -> None:
    tar = nodes.image("an_image_imported_on_a_is_listed_on_b")
    a, b = nodes.a, nodes.b
    a.ctr("images", "import", *SN, str(tar), namespace="imp")
    assert [r[0] for r in rows(b.ctr("images", "ls", namespace="imp").stdout)] == [IMAGE]
    # The index is the cluster's, the bytes are a's: b lists no content of its own.
    held_by_a = image_digests(a, "imp")
    assert held_by_a and image_digests(b, "imp") == set()
    digest = sorted(held_by_a)[0]
    holders = cluster_cli(a, "holders", "imp", digest)
    assert rows(holders.stdout) == [["a", "yes"]], holders.stdout
    # b pulling the same image holds it too; the records stay one per blob.
    b.ctr("images", "import", *SN, str(tar), namespace="imp")
    assert image_digests(b, "imp") == held_by_a
    assert rows(cluster_cli(b, "holders", "imp", digest).stdout) == [["a", "yes"], ["b", "yes"]]
    check = rows(b.ctr("images", "check", *SN, namespace="imp").stdout)
    assert check[0][-1] == "true" and "complete" in check[0]
    assert cluster_cli(a, "check").returncode == 0


def test_containers_and_snapshots_stay_with_their_node(nodes: Nodes) -> None:
    tar = nodes.image("containers_and_snapshots_stay_with_their_node")
    a, b = nodes.a, nodes.b
    ns = "per-node"
    a.ctr("images", "import", *SN, str(tar), namespace=ns)
    a.ctr("containers", "create", *SN, IMAGE, "c1", namespace=ns)
    assert [r[0] for r in rows(a.ctr("containers", "ls", namespace=ns).stdout)] == ["c1"]
    assert rows(b.ctr("containers", "ls", namespace=ns).stdout) == []
    snaps_a = {r[0] for r in rows(a.ctr("snapshots", *SN, "ls", namespace=ns).stdout)}
    assert "c1" in snaps_a
    assert rows(b.ctr("snapshots", *SN, "ls", namespace=ns).stdout) == []
    # The same id on b is b's own container.
    b.ctr("images", "import", *SN, str(tar), namespace=ns)
    b.ctr("containers", "create", *SN, IMAGE, "c1", namespace=ns)
    b.ctr("containers", "rm", "c1", namespace=ns)
    assert [r[0] for r in rows(a.ctr("containers", "ls", namespace=ns).stdout)] == ["c1"]
    # A namespace a node still uses cannot go from another node.
    b.ctr("images", "rm", "--sync", IMAGE, namespace=ns)
    failed = b.ctr("namespaces", "rm", ns, check=False)
    assert failed.returncode != 0
    assert 'node "a" still has containers' in failed.stderr
    a.ctr("containers", "rm", "c1", namespace=ns)


def test_images_rm_sync_on_b_removes_it_everywhere_and_a_collects(nodes: Nodes) -> None:
    tar = nodes.image("images_rm_sync_on_b_removes_it_everywhere_and_a_collects")
    a, b = nodes.a, nodes.b
    ns = "rm-sync"
    a.ctr("images", "import", *SN, str(tar), namespace=ns)
    b.ctr("images", "import", *SN, str(tar), namespace=ns)
    mine = image_digests(a, ns)
    assert mine and mine <= blobs(a) and mine <= blobs(b)
    before_snaps = len(rows(a.ctr("snapshots", *SN, "ls", namespace=ns).stdout))
    assert before_snaps > 0

    b.ctr("images", "rm", "--sync", IMAGE, namespace=ns)
    assert rows(a.ctr("images", "ls", namespace=ns).stdout) == []
    assert not (mine & blobs(b))  # b collected at once (--sync)
    # a hears of it through etcd and collects its own copies.
    wait_until(lambda: not (mine & blobs(a)), 30, "a's collection")
    assert image_digests(a, ns) == set()
    assert rows(a.ctr("snapshots", *SN, "ls", namespace=ns).stdout) == []
    assert cluster_cli(a, "check").returncode == 0
    nodes.a.ctr("namespaces", "rm", ns)


def test_namespace_isolation_holds_across_nodes(nodes: Nodes) -> None:
    tar = nodes.image("namespace_isolation_holds_across_nodes")
    a, b = nodes.a, nodes.b
    a.ctr("images", "import", *SN, str(tar), namespace="iso1")
    digest = sorted(image_digests(a, "iso1"))[0]
    for node in (a, b):
        assert rows(node.ctr("images", "ls", namespace="iso2").stdout) == []
        assert node.ctr("content", "get", digest, namespace="iso2", check=False).returncode != 0
        assert node.ctr("content", "info", digest, namespace="iso2", check=False).returncode != 0
    # b sees the image of iso1 but not its bytes, which it does not hold.
    assert [r[0] for r in rows(b.ctr("images", "ls", namespace="iso1").stdout)] == [IMAGE]
    assert b.ctr("content", "get", digest, namespace="iso1", check=False).returncode != 0
    a.ctr("images", "rm", "--sync", IMAGE, namespace="iso1")


def test_a_killed_node_stops_counting_as_a_holder_and_comes_back(nodes: Nodes) -> None:
    tar = nodes.image("a_killed_node_stops_counting_as_a_holder_and_comes_back")
    a, b = nodes.a, nodes.b
    ns = "lapse"
    a.ctr("images", "import", *SN, str(tar), namespace=ns)
    b.ctr("images", "import", *SN, str(tar), namespace=ns)
    digest = sorted(image_digests(a, ns))[0]
    b.kill9()
    try:
        wait_until(lambda: metadata_exports(a).get("nodes") == "a", 20, "b's lease to lapse")
        assert rows(cluster_cli(a, "holders", ns, digest).stdout) == [["a", "yes"], ["b", "no"]]
        table = {r[0]: r[1:] for r in rows(cluster_cli(a, "ls").stdout)}
        assert table["b"][0] == "no"
        # a goes on without b.
        a.ctr("namespaces", "create", "while-b-was-away")
    finally:
        b.start()
    wait_until(lambda: metadata_exports(a).get("nodes") == "a,b", 20, "b back")
    assert image_digests(b, ns) == image_digests(a, ns)
    assert "while-b-was-away" in b.ctr("namespaces", "ls", "-q").stdout.split()
    assert rows(cluster_cli(b, "holders", ns, digest).stdout) == [["a", "yes"], ["b", "yes"]]
    a.ctr("images", "rm", "--sync", IMAGE, namespace=ns)


@pytest.mark.runc
def test_tasks_run_on_their_own_node(nodes: Nodes) -> None:
    need_binary("runc", "containerd-shim-runc-v2")
    a, b = nodes.a, nodes.b
    image = "docker.io/library/cluster-run:1"
    tar = build_image_tar(nodes.root / "run.tar", image)  # busybox
    a.ctr("images", "import", *SN, str(tar), namespace="run")
    out = a.ctr("run", "--rm", *SN, image, "t-echo", "echo", "hi", namespace="run")
    assert out.stdout == "hi\n"
    a.ctr("run", "-d", *SN, image, "t-d", "sleep", "300", namespace="run")
    try:
        assert [r[0] for r in rows(a.ctr("tasks", "ls", namespace="run").stdout)] == ["t-d"]
        assert rows(b.ctr("tasks", "ls", namespace="run").stdout) == []
        assert rows(b.ctr("containers", "ls", namespace="run").stdout) == []
        # b cannot start a task for a's container: it has no such container.
        started = b.ctr("tasks", "start", "t-d", namespace="run", check=False)
        assert started.returncode != 0 and "not found" in started.stderr
    finally:
        a.ctr("tasks", "kill", "-s", "SIGKILL", "t-d", namespace="run", check=False)
        wait_until(
            lambda: "RUNNING" not in a.ctr("tasks", "ls", namespace="run").stdout, 20, "stop"
        )
        a.ctr("tasks", "rm", "-f", "t-d", namespace="run", check=False)
        a.ctr("containers", "rm", "t-d", namespace="run", check=False)
    assert rows(a.ctr("containers", "ls", namespace="run").stdout) == []
    a.ctr("images", "rm", "--sync", image, namespace="run")
