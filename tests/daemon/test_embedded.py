"""The README's run path on a fresh machine: no config file, one command, ``ctr`` works.

``scripts/run`` installs what is missing and then execs ``.venv/bin/berthd``
with its arguments; this runs that same console script with only
``--root``/``--state`` pointing at a temp dir, from a shell whose PATH does
not include the venv (the plugins' commands must still be found).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from daemon.config import DEFAULT_CONFIG_PATH
from tests.support import Proc, need_binary, need_root, short_tmpdir, wait_for_socket
from tests.support.berthd import BIN, embedded_plugin_count, need_plugin, wait_until
from tests.support.containerd import ctr

pytestmark = [pytest.mark.containerd, pytest.mark.root, pytest.mark.overlay]


def test_berthd_with_no_config_gives_a_working_daemon() -> None:
    need_root()
    need_binary("ctr")
    need_plugin("services.content.main")
    need_plugin("services.snapshotter.main")
    if os.path.exists(DEFAULT_CONFIG_PATH):
        pytest.skip(f"{DEFAULT_CONFIG_PATH} exists on this machine; berthd would read it")
    with short_tmpdir("be") as d:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        proc = Proc([str(BIN / "berthd"), "--root", str(d / "root"), "--state", str(d / "run")],
                    d / "berthd.log", env=env)  # fmt: skip
        try:
            sock = str(d / "run" / "berthd.sock")
            wait_for_socket(sock, timeout=60, proc=proc.popen)
            out = ctr(sock, "plugins", "ls").stdout
            proxies = re.findall(
                r"^io\.containerd\.(content|snapshotter|differ)\.v1\s+(\S+)\s+\S+\s+ok", out, re.M
            )
            assert sorted(p[1] for p in proxies) == ["content", "native", "overlayfs", "walking"]
            wait_until(
                lambda: ctr(sock, "content", "ls", check=False).returncode == 0,
                what=f"content\n{proc.output()}",
            )
            assert ctr(sock, "snapshots", "ls", check=False).returncode == 0, proc.output()
            assert "Server:" in ctr(sock, "version").stdout
            kids = [p for p in Path("/proc").iterdir() if p.name.isdigit()]
            ours = [p for p in kids if str(d).encode() in _cmdline(p)]
            assert len(ours) == 1 + embedded_plugin_count()  # the daemon and its plugins
        finally:
            assert proc.stop() == 0, proc.output()
        assert not any(p.is_socket() for p in (d / "run").iterdir())


def _cmdline(p: Path) -> bytes:
    try:
        return (p / "cmdline").read_bytes()
    except OSError:
        return b""
