"""The real ``ctr`` against berthd on its embedded default: version, plugins, content, snapshots.

One daemon for the module, started exactly as ``berthd config default``
describes it (content, one snapshotter process serving overlayfs and native,
and the differ as supervised children); every call crosses into a plugin process.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from importlib import metadata

import pytest

from tests.support import need_binary, need_root, short_tmpdir
from tests.support.berthd import Berthd, embedded_toml, need_plugin
from tests.support.containerd import ctr, ctr_bytes

pytestmark = [pytest.mark.containerd, pytest.mark.root, pytest.mark.overlay]


@pytest.fixture(scope="module")
def daemon() -> Iterator[Berthd]:
    need_root()
    need_binary("ctr")
    need_plugin("services.content.main")
    need_plugin("services.snapshotter.main")
    with short_tmpdir("bc") as d, Berthd(d, embedded_toml(d)) as b:
        b.wait_startup_gc()  # content written below is held by no lease
        yield b


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()[1:]]


def test_version(daemon: Berthd) -> None:
    out = daemon.ctr("version").stdout
    server = out.split("Server:", 1)[1]
    # the installed distribution's version, as importlib.metadata reads it
    assert re.search(rf"Version:\s+v{re.escape(metadata.version('berthd'))}\n", server), out
    assert re.search(r"Revision:\s+\S+", server), out
    uuid = re.search(r"UUID:\s+([0-9a-f-]{36})", server)
    assert uuid is not None, out
    # persisted under the introspection plugin's root, stable across calls
    uuid_file = daemon.root / "io.containerd.grpc.v1.introspection" / "uuid"
    assert uuid_file.read_text() == uuid.group(1)
    assert uuid.group(1) in daemon.ctr("version").stdout


def test_plugins_ls(daemon: Berthd) -> None:
    table = {(r[0], r[1]): r[2:] for r in rows(daemon.ctr("plugins", "ls").stdout)}
    for key in [
        ("io.containerd.content.v1", "content"),
        ("io.containerd.snapshotter.v1", "overlayfs"),
        ("io.containerd.snapshotter.v1", "native"),
        ("io.containerd.differ.v1", "walking"),
        ("io.containerd.service.v1", "introspection-service"),
        ("io.containerd.service.v1", "content-service"),
        ("io.containerd.service.v1", "snapshots-service"),
        ("io.containerd.grpc.v1", "introspection"),
        ("io.containerd.grpc.v1", "version"),
        ("io.containerd.grpc.v1", "healthcheck"),
        ("io.containerd.grpc.v1", "content"),
        ("io.containerd.grpc.v1", "snapshots"),
    ]:
        assert key in table, (key, table)
        assert table[key][-1] == "ok", (key, table[key])
    assert table[("io.containerd.snapshotter.v1", "overlayfs")][0].startswith("linux/")
    assert table[("io.containerd.grpc.v1", "version")][0] == "-"


def test_plugins_ls_detailed_shows_exports(daemon: Berthd) -> None:
    out = daemon.ctr("plugins", "ls", "-d").stdout
    blocks = {}
    for block in re.split(r"\n\s*\n", out):
        m = re.search(r"Type:\s+(\S+)\s+ID:\s+(\S+)", block)
        if m:
            blocks[(m.group(1), m.group(2))] = block
    content = blocks[("io.containerd.content.v1", "content")]
    assert re.search(rf"address\s+{re.escape(str(daemon.state / 'content.sock'))}", content)
    snap = blocks[("io.containerd.snapshotter.v1", "overlayfs")]
    assert re.search(rf"address\s+{re.escape(str(daemon.state / 'snapshotter.sock'))}", snap)
    assert "Platforms:" in snap
    service = blocks[("io.containerd.service.v1", "content-service")]
    # As in containerd: the content service stands on the metadata layer.
    assert re.search(r"Requires:\s+io.containerd.metadata.v1", service)


def test_plugins_ls_filters(daemon: Berthd) -> None:
    only = rows(daemon.ctr("plugins", "ls", "type==io.containerd.snapshotter.v1").stdout)
    assert sorted(r[1] for r in only) == ["native", "overlayfs"]
    assert {r[0] for r in only} == {"io.containerd.snapshotter.v1"}
    either = rows(daemon.ctr("plugins", "ls", "id==content", "id==version").stdout)
    assert sorted(r[1] for r in either) == ["content", "content", "version"]
    bad = daemon.ctr("plugins", "ls", "type==", check=False)
    assert bad.returncode != 0 and "invalid argument" in bad.stderr


def test_content_reaches_the_plugin(daemon: Berthd) -> None:
    blob = b"hello from ctr through berthd\n"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    daemon.ctr("content", "ingest", "test-ref", input=blob)
    listed = daemon.ctr("content", "ls").stdout
    assert digest in listed
    assert ctr_bytes(daemon.address, "content", "get", digest) == blob
    # the bytes live in the plugin's store under the daemon root...
    blob_path = daemon.root / "io.containerd.content.v1.content" / "blobs" / "sha256" / digest[7:]
    assert blob_path.read_bytes() == blob
    # ...and the plugin's own socket answers the same
    direct = ctr(str(daemon.state / "content.sock"), "content", "ls").stdout
    assert digest in direct
    daemon.ctr("content", "label", digest, "berthd.test=yes")
    assert "berthd.test=yes" in daemon.ctr("content", "ls").stdout
    daemon.ctr("content", "rm", digest)
    assert digest not in daemon.ctr("content", "ls").stdout
    missing = daemon.ctr("content", "get", digest, check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr


def test_snapshots_reach_the_plugin(daemon: Berthd) -> None:
    daemon.ctr("snapshots", "prepare", "active-1")
    table = {r[0]: r[1:] for r in rows(daemon.ctr("snapshots", "ls").stdout)}
    assert table["active-1"] == ["Active"]
    mounts = daemon.ctr("snapshots", "mounts", "/mnt", "active-1").stdout
    assert str(daemon.root / "io.containerd.snapshotter.v1.overlayfs") in mounts
    daemon.ctr("snapshots", "commit", "committed-1", "active-1")
    daemon.ctr("snapshots", "prepare", "child-1", "committed-1")
    info = daemon.ctr("snapshots", "info", "child-1").stdout
    assert '"Parent": "committed-1"' in info
    tree = daemon.ctr("snapshots", "tree").stdout
    assert "committed-1" in tree and "child-1" in tree
    daemon.ctr("snapshots", "rm", "child-1")
    daemon.ctr("snapshots", "rm", "committed-1")
    assert daemon.ctr("snapshots", "ls").stdout.strip() == "KEY PARENT KIND"
    exists = daemon.ctr("snapshots", "info", "child-1", check=False)
    assert exists.returncode != 0 and "not found" in exists.stderr


def test_snapshots_info_kinds(daemon: Berthd) -> None:
    """Stat is answered from the daemon's metadata: the same kinds, parents and
    labels as List (which asks the plugin) and as containerd's ctr shows them."""
    ns = "stat-kinds"
    daemon.ctr("snapshots", "prepare", "base", namespace=ns)
    daemon.ctr("snapshots", "commit", "layer", "base", namespace=ns)
    daemon.ctr("snapshots", "label", "layer", "role=layer", namespace=ns)
    daemon.ctr("snapshots", "prepare", "work", "layer", namespace=ns)
    daemon.ctr("snapshots", "view", "look", "layer", namespace=ns)
    daemon.ctr("snapshots", "label", "work", "owner=test", namespace=ns)
    info = {
        k: json.loads(daemon.ctr("snapshots", "info", k, namespace=ns).stdout)
        for k in ("layer", "work", "look")
    }
    assert info["layer"]["Kind"] == "Committed" and "Parent" not in info["layer"]
    assert info["layer"]["Labels"]["role"] == "layer"
    assert (info["work"]["Kind"], info["work"]["Parent"]) == ("Active", "layer")
    assert info["work"]["Labels"]["owner"] == "test"
    assert (info["look"]["Kind"], info["look"]["Parent"]) == ("View", "layer")
    listed = {r[0]: r[1:] for r in rows(daemon.ctr("snapshots", "ls", namespace=ns).stdout)}
    assert listed == {
        "layer": ["Committed"],
        "work": ["layer", "Active"],
        "look": ["layer", "View"],
    }
    gone = daemon.ctr("snapshots", "info", "base", namespace=ns, check=False)
    assert gone.returncode != 0
    assert "snapshot base does not exist: not found" in gone.stderr
    for key in ("look", "work", "layer"):
        daemon.ctr("snapshots", "rm", key, namespace=ns)


def test_unknown_snapshotter_is_invalid_argument(daemon: Berthd) -> None:
    out = daemon.ctr("snapshots", "--snapshotter", "zfs", "ls", check=False)
    assert out.returncode != 0
    assert "snapshotter not loaded: zfs: invalid argument" in out.stderr
