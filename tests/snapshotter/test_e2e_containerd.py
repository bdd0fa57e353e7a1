"""Real containerd using our plugin as its ``berth`` snapshotter, driven by the real ctr.

containerd is configured with::

    [proxy_plugins.berth]
      type = "snapshot"
      address = "<our socket>"

and every ``ctr snapshots`` command is run twice, once with ``--snapshotter
berth`` and once with containerd's own ``overlayfs``; the outputs must match
once the two roots and the timestamps are masked.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.snapshotter.conformance import grpc_snapshotter
from tests.snapshotter.plugin import Plugin
from tests.support import short_tmpdir
from tests.support.containerd import Containerd, need_containerd, need_runc
from tests.support.oci import build_image_tar

pytestmark = [pytest.mark.containerd, pytest.mark.root, pytest.mark.overlay]

IMAGE = "docker.io/library/berth-test:latest"
LAYERS: list[Mapping[str, bytes]] = [
    {"etc/a": b"a\n"},
    {"etc/b": b"b\n", "usr/share/x": b"x" * 10000},
]


@dataclass
class Stack:
    plugin: Plugin
    cd: Containerd
    image: Path

    def ctr(self, *args: str, check: bool = True) -> str:
        return self.cd.ctr(*args, check=check).stdout

    def sn(self, snapshotter: str, *args: str, check: bool = True) -> tuple[int, str, str]:
        r = self.cd.ctr("snapshots", "--snapshotter", snapshotter, *args, check=check)
        return r.returncode, r.stdout, r.stderr


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    need_containerd()
    with short_tmpdir("be2e") as d:
        image = build_image_tar(d / "image.tar", layers=LAYERS)
        with (
            Plugin(d / "plugin", "overlayfs") as plugin,
            Containerd(
                d / "cd", proxy_plugins={"berth": {"type": "snapshot", "address": plugin.address}}
            ) as cd,
        ):
            yield Stack(plugin, cd, image)


def _normalize(text: str, stack: Stack) -> str:
    text = text.replace(str(stack.plugin.root), "<root>")
    text = text.replace(str(stack.cd.root / "io.containerd.snapshotter.v1.overlayfs"), "<root>")
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "<time>", text)
    return text


def _labels(line: str) -> list[str]:
    # ctr prints labels in Go map order: compare them as a set.
    return sorted(line.strip().split(","))


def _info(out: str) -> dict[str, object]:
    # Timestamps (including the gc.root label ctr sets) are masked.
    info = json.loads(re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "<time>", out))
    info.pop("Created")
    info.pop("Updated")
    return dict(info)


def _session(stack: Stack, sn: str, top: str) -> dict[str, object]:
    """The same ctr snapshots session against snapshotter ``sn``; its observable results."""

    def n(out: str) -> str:
        return _normalize(out, stack)

    out: dict[str, object] = {}
    # ctr's "view" sets no gc.root label and uses no lease, so containerd's GC
    # may take the view at any collection: run a collection to completion
    # first (a --sync lease removal waits for one), then root the view at once.
    stack.ctr("leases", "create", "--id", f"flush-{sn}")
    stack.ctr("leases", "rm", "--sync", f"flush-{sn}")
    for cmd in ("ls", "tree", "usage"):
        out[cmd] = n(stack.sn(sn, cmd)[1])
    out["info"] = _info(stack.sn(sn, "info", top)[1])
    out["prepare"] = n(stack.sn(sn, "prepare", "--target", "/mnt/t", "k-active", top)[1])
    out["mounts"] = n(stack.sn(sn, "mounts", "/mnt/m", "k-active")[1])
    out["view"] = n(stack.sn(sn, "view", "--target", "/mnt/v", "k-view", top)[1])
    stack.sn(sn, "label", "k-view", "containerd.io/gc.root=e2e")
    out["label"] = _labels(n(stack.sn(sn, "label", "k-active", "foo=bar", "x=y")[1]))
    out["info-active"] = _info(stack.sn(sn, "info", "k-active")[1])
    out["unlabel"] = _labels(n(stack.sn(sn, "label", "k-active", "x=")[1]))
    out["rm-parent"] = stack.sn(sn, "rm", top, check=False)
    out["commit-view"] = stack.sn(sn, "commit", "k-bad", "k-view", check=False)
    out["commit"] = stack.sn(sn, "commit", "k-committed", "k-active")
    out["info-committed"] = _info(stack.sn(sn, "info", "k-committed")[1])
    out["usage-committed"] = n(stack.sn(sn, "usage", "k-committed")[1])
    out["mounts-committed"] = stack.sn(sn, "mounts", "/mnt/c", "k-committed", check=False)
    for cmd in ("ls", "tree"):
        out[f"{cmd}-after"] = n(stack.sn(sn, cmd)[1])
    out["rm"] = stack.sn(sn, "rm", "k-view", "k-committed")
    out["rm-missing"] = stack.sn(sn, "rm", "k-view", check=False)
    out["ls-end"] = n(stack.sn(sn, "ls")[1])
    return out


def test_snapshots_commands_match_containerd_overlayfs(stack: Stack) -> None:
    for sn in ("berth", "overlayfs"):
        stack.ctr("images", "import", "--snapshotter", sn, str(stack.image))
    chain = stack.sn("berth", "ls")[1].splitlines()[1:]
    assert len(chain) == 3, chain
    tree = stack.sn("berth", "tree")[1].splitlines()
    top = tree[-1].split()[-1]

    ours = _session(stack, "berth", top)
    theirs = _session(stack, "overlayfs", top)
    for step in theirs:
        assert ours[step] == theirs[step], (
            f"{step}:\nberth:     {ours[step]}\noverlayfs: {theirs[step]}"
        )
    # Sanity: the session did what it claims.
    assert "index=off" in str(ours["mounts"])
    rm_parent, commit_view = ours["rm-parent"], ours["commit-view"]
    assert isinstance(rm_parent, tuple) and isinstance(commit_view, tuple)
    assert rm_parent[0] != 0 and "cannot remove snapshot with child" in rm_parent[2]
    assert commit_view[0] != 0


def test_unpacked_layers_live_in_our_plugin(stack: Stack) -> None:
    async def walk() -> list[tuple[str, str, str]]:
        async with grpc_snapshotter(stack.plugin.address, "berth") as sn:
            return [(i.name, str(i.kind), i.parent) async for i in sn.walk()]

    infos = asyncio.run(walk())
    committed = [i for i in infos if i[1] == "committed"]
    # containerd names backend snapshots "<namespace>/<n>/<key>".
    chain_ids = {name.rsplit("/", 1)[1] for name, _, _ in committed}
    ours = set(stack.sn("berth", "ls")[1].split())
    assert chain_ids <= ours
    assert len(committed) >= 3


def test_run_echo_hi(stack: Stack) -> None:
    need_runc()
    stack.ctr("images", "import", "--snapshotter", "berth", str(stack.image))
    r = stack.cd.ctr("run", "--snapshotter", "berth", "--rm", IMAGE, "e2e-hi", "echo", "hi")
    assert r.stdout == "hi\n"
    # The container's rootfs sees every layer.
    r = stack.cd.ctr(
        "run", "--snapshotter", "berth", "--rm", IMAGE, "e2e-cat", "cat", "/etc/a", "/etc/b"
    )
    assert r.stdout == "a\nb\n"


def test_gc_removes_and_cleans_up_in_plugin(stack: Stack) -> None:
    stack.ctr("images", "import", "--snapshotter", "berth", str(stack.image))
    stack.sn("berth", "prepare", "gc-victim", stack.sn("berth", "tree")[1].split()[-1])
    stack.sn("berth", "rm", "gc-victim")
    # Removing the image with --sync runs containerd's GC at once: it removes
    # every unreferenced backend snapshot through our plugin, then Cleanup.
    stack.ctr("images", "rm", "--sync", IMAGE)
    deadline = time.monotonic() + 30
    remaining: list[str] = []
    while time.monotonic() < deadline:
        remaining = sorted(p.name for p in (stack.plugin.root / "snapshots").iterdir())
        if not remaining and not stack.sn("berth", "ls")[1].splitlines()[1:]:
            break
        time.sleep(0.2)
    assert remaining == []
    assert stack.sn("berth", "ls")[1].splitlines()[1:] == []
