"""kill -9 of the plugin while a container runs from its snapshots; restart; nothing lost.

containerd keeps its connection to the proxy plugin and redials it (backoff
capped at 3 s), so once the plugin is back every ``ctr`` command works again,
the running container never notices, and every snapshot is still there.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from services.snapshotter.snapshotter import Info
from tests.snapshotter.conformance import grpc_snapshotter
from tests.snapshotter.plugin import Plugin
from tests.support import short_tmpdir
from tests.support.containerd import Containerd, need_runc
from tests.support.oci import build_image_tar

pytestmark = [pytest.mark.containerd, pytest.mark.runc, pytest.mark.root, pytest.mark.overlay]

IMAGE = "docker.io/library/berth-test:latest"


def _backend_infos(address: str) -> dict[str, Info]:
    async def walk() -> dict[str, Info]:
        async with grpc_snapshotter(address, "berth") as sn:
            return {i.name: i async for i in sn.walk()}

    return asyncio.run(walk())


def _retry(fn: object, timeout: float = 20.0) -> str:
    assert callable(fn)
    deadline = time.monotonic() + timeout
    while True:
        r = fn()
        if r.returncode == 0:
            return str(r.stdout)
        if time.monotonic() > deadline:
            raise AssertionError(f"still failing after {timeout}s: {r.stderr}")
        time.sleep(0.2)


def test_kill_9_while_container_runs() -> None:
    need_runc()
    with short_tmpdir("brst") as d:
        image = build_image_tar(d / "image.tar", layers=[{"etc/a": b"a\n"}])
        plugin = Plugin(d / "plugin", "overlayfs").start()
        proxy = {"berth": {"type": "snapshot", "address": plugin.address}}
        try:
            with Containerd(d / "cd", proxy_plugins=proxy) as cd:
                cd.ctr("images", "import", "--snapshotter", "berth", str(image))
                cd.ctr("run", "-d", "--snapshotter", "berth", IMAGE, "sleeper", "sleep", "1000")
                listed = cd.ctr("snapshots", "--snapshotter", "berth", "ls").stdout
                assert "sleeper" in listed
                before = _backend_infos(plugin.address)

                plugin.kill()
                assert Path(plugin.address).exists(), "a crash leaves the socket behind"
                down = cd.ctr("snapshots", "--snapshotter", "berth", "ls", check=False)
                assert down.returncode != 0
                # The rest of containerd is unaffected meanwhile.
                assert "sleeper" in cd.ctr("tasks", "ls").stdout
                cd.ctr("snapshots", "--snapshotter", "overlayfs", "ls")

                plugin.start()  # same root, same (stale) socket path
                after_ls = _retry(
                    lambda: cd.ctr("snapshots", "--snapshotter", "berth", "ls", check=False)
                )
                assert after_ls == listed
                assert _backend_infos(plugin.address) == before

                # The container kept running from the snapshot's mounts.
                out = cd.ctr("tasks", "exec", "--exec-id", "probe", "sleeper", "cat", "/etc/a")
                assert out.stdout == "a\n"
                assert "RUNNING" in cd.ctr("tasks", "ls").stdout

                cd.ctr("tasks", "kill", "-s", "SIGKILL", "sleeper")
                _retry(lambda: cd.ctr("tasks", "delete", "sleeper", check=False))
                cd.ctr("containers", "rm", "sleeper")
                assert "sleeper" not in cd.ctr("snapshots", "--snapshotter", "berth", "ls").stdout

                r = cd.ctr("run", "--rm", "--snapshotter", "berth", IMAGE, "again", "echo", "hi")
                assert r.stdout == "hi\n"
        finally:
            plugin.stop()
