"""The snapshotters containerd has built in, through berthd's embedded default.

As containerd on Linux, the embedded default serves ``native`` beside
``overlayfs`` (clients' default): one ``berthd-snapshotter`` process serves
both on one socket, reached through two ``[proxy_plugins]`` entries.  The
real ``ctr`` imports an image into each (the differ unpacks into either
root), checks it, lists the snapshots of each by name and runs a container
on each.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import need_binary, need_root, short_tmpdir
from tests.support.berthd import (
    Berthd,
    embedded_plugin_count,
    embedded_toml,
    need_plugin,
    wait_until,
)
from tests.support.containerd import need_runc
from tests.support.oci import build_image_tar

pytestmark = [pytest.mark.containerd, pytest.mark.root, pytest.mark.overlay]

IMAGE = "docker.io/library/berth-builtin:latest"
NATIVE = ("--snapshotter", "native")


@pytest.fixture(scope="module")
def daemon() -> Iterator[Berthd]:
    need_root()
    need_binary("ctr")
    for module in ("services.content.main", "services.snapshotter.main", "services.diff.main"):
        need_plugin(module)
    with short_tmpdir("bb") as d, Berthd(d, embedded_toml(d)) as b:
        yield b


@pytest.fixture(scope="module")
def image_tar(daemon: Berthd) -> Path:
    return build_image_tar(
        daemon.workdir / "img.tar",
        IMAGE,
        layers=[{"etc/hello": b"hello\n"}, {"etc/two": b"2\n"}],
        busybox=False,
    )


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()[1:] if line.strip()]


def snapshot_keys(b: Berthd, *args: str, namespace: str) -> set[str]:
    return {r[0] for r in rows(b.ctr("snapshots", *args, "ls", namespace=namespace).stdout)}


def test_one_process_serves_both_names(daemon: Berthd) -> None:
    table = {(r[0], r[1]): r[2:] for r in rows(daemon.ctr("plugins", "ls").stdout)}
    for name in ("overlayfs", "native"):
        assert table[("io.containerd.snapshotter.v1", name)][-1] == "ok", table
    snapshotters = [cmd for cmd in daemon.children().values() if "berthd-snapshotter" in cmd]
    assert len(snapshotters) == 1, daemon.children()
    assert len(daemon.children()) == embedded_plugin_count()
    detailed = daemon.ctr("plugins", "ls", "-d", "type==io.containerd.snapshotter.v1").stdout
    sock = re.escape(str(daemon.state / "snapshotter.sock"))
    assert len(re.findall(rf"^\s+address\s+{sock}$", detailed, re.M)) == 2, detailed
    # Start-up waited for the shared process before serving: the entry
    # without a command of its own was up when the daemon's socket appeared.
    assert "not up yet" not in daemon.output(), daemon.output()


def test_import_into_native(daemon: Berthd, image_tar: Path) -> None:
    b, ns = daemon, "native-import"
    out = b.ctr("images", "import", *NATIVE, str(image_tar), namespace=ns).stdout
    assert "done" in out
    [check] = rows(b.ctr("images", "check", *NATIVE, namespace=ns).stdout)
    assert check[0] == IMAGE and "complete" in check and check[-1] == "true", check
    # Unpacked into native only: overlayfs does not have it.
    [check] = rows(b.ctr("images", "check", namespace=ns).stdout)
    assert check[-1] == "false", check
    keys = snapshot_keys(b, *NATIVE, namespace=ns)
    assert len(keys) == 2
    assert snapshot_keys(b, namespace=ns) == set()
    # native snapshots are full copies under containerd's root for native.
    native_root = b.root / "io.containerd.snapshotter.v1.native"
    tops = [d for d in (native_root / "snapshots").iterdir() if (d / "etc" / "two").exists()]
    assert len(tops) == 1 and (tops[0] / "etc" / "hello").read_bytes() == b"hello\n"
    # A container's rootfs comes from the snapshotter it names.
    b.ctr("containers", "create", *NATIVE, IMAGE, "c-native", "true", namespace=ns)
    info = json.loads(b.ctr("containers", "info", "c-native", namespace=ns).stdout)
    assert info["Snapshotter"] == "native"
    mounts = b.ctr("snapshots", *NATIVE, "mounts", "/mnt", "c-native", namespace=ns).stdout
    assert f"mount -t bind {native_root}/snapshots/" in mounts, mounts
    b.ctr("containers", "rm", "c-native", namespace=ns)
    b.ctr("images", "rm", "--sync", IMAGE, namespace=ns)
    assert snapshot_keys(b, *NATIVE, namespace=ns) == set()


def test_overlayfs_stays_the_default(daemon: Berthd, image_tar: Path) -> None:
    b, ns = daemon, "default-import"
    b.ctr("images", "import", str(image_tar), namespace=ns)
    [check] = rows(b.ctr("images", "check", namespace=ns).stdout)
    assert "complete" in check and check[-1] == "true", check
    keys = snapshot_keys(b, namespace=ns)
    assert len(keys) == 2
    assert snapshot_keys(b, "--snapshotter", "overlayfs", namespace=ns) == keys
    assert snapshot_keys(b, *NATIVE, namespace=ns) == set()
    overlay_root = b.root / "io.containerd.snapshotter.v1.overlayfs"
    layers = [d / "fs" for d in (overlay_root / "snapshots").iterdir()]
    assert sorted(p.name for fs in layers for p in (fs / "etc").iterdir()) == ["hello", "two"]
    b.ctr("images", "rm", "--sync", IMAGE, namespace=ns)
    assert snapshot_keys(b, namespace=ns) == set()


def test_the_names_are_separate_stores(daemon: Berthd) -> None:
    b, ns = daemon, "by-name"
    b.ctr("snapshots", *NATIVE, "prepare", "only-native", namespace=ns)
    assert snapshot_keys(b, *NATIVE, namespace=ns) == {"only-native"}
    assert snapshot_keys(b, namespace=ns) == set()
    gone = b.ctr("snapshots", "info", "only-native", namespace=ns, check=False)
    assert gone.returncode != 0 and "not found" in gone.stderr
    b.ctr("snapshots", *NATIVE, "rm", "only-native", namespace=ns)
    unknown = b.ctr("snapshots", "--snapshotter", "btrfs", "ls", namespace=ns, check=False)
    assert "snapshotter not loaded: btrfs: invalid argument" in unknown.stderr


@pytest.mark.runc
def test_run_on_each_snapshotter(daemon: Berthd) -> None:
    """A container's rootfs from either snapshotter: native's bind mount, overlayfs's overlay."""
    need_runc()
    b, ns, image = daemon, "run", "docker.io/library/berth-run:latest"
    tar = build_image_tar(daemon.workdir / "run.tar", image)
    for snapshotter in ("native", "overlayfs"):
        sn = ("--snapshotter", snapshotter)
        b.ctr("images", "import", *sn, str(tar), namespace=ns)
        out = b.ctr("run", "--rm", *sn, image, f"on-{snapshotter}", "echo", "hi", namespace=ns)
        assert out.stdout == "hi\n", out
    b.ctr("images", "rm", "--sync", image, namespace=ns)
    for snapshotter in ("native", "overlayfs"):
        assert snapshot_keys(b, "--snapshotter", snapshotter, namespace=ns) == set()


def test_both_names_come_back_when_the_process_restarts(daemon: Berthd) -> None:
    b, ns = daemon, "restart"
    b.ctr("snapshots", *NATIVE, "prepare", "survives", namespace=ns)
    b.ctr("snapshots", "prepare", "survives", namespace=ns)
    old = b.child("berthd-snapshotter")
    os.kill(old, signal.SIGKILL)

    def mounts(*args: str) -> bool:
        # Mounts asks the snapshotter itself (listing reads only the daemon's metadata).
        out = b.ctr("snapshots", *args, "mounts", "/mnt", "survives", namespace=ns, check=False)
        return out.returncode == 0

    def restarted() -> bool:
        pids = [pid for pid, cmd in b.children().items() if "berthd-snapshotter" in cmd]
        return len(pids) == 1 and pids[0] != old

    # The supervisor restarts the one process; both entries reconnect to it.
    wait_until(restarted, what=f"snapshotter restarted\n{b.output()}")
    wait_until(lambda: mounts(*NATIVE) and mounts(), what=f"both back\n{b.output()}")
    b.ctr("snapshots", *NATIVE, "rm", "survives", namespace=ns)
    b.ctr("snapshots", "rm", "survives", namespace=ns)
