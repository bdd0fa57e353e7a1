"""berthd with the metadata layer over real plugin processes, for tests driven
by the real ``ctr``: the content store, the native snapshotter and the differ,
all under one directory (the launcher is ``tests.support.berthd.Berthd``)."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.support import PYTHON
from tests.support.berthd import Berthd

VENV_BIN = Path(PYTHON).parent


def _q(s: str | Path) -> str:
    return json.dumps(str(s))


def _argv(*items: str | Path) -> str:
    return "[" + ", ".join(_q(i) for i in items) + "]"


def config_toml(d: Path, extra: str = "") -> str:
    """Daemon, content, native snapshotter and differ, all under ``d``; ``extra``
    is appended (e.g. a plugin section).

    The differ reads and writes content through the daemon (namespaced, under
    the caller's lease), as containerd's diff service does.
    """
    run = d / "run"
    sock = run / "berthd.sock"
    c_sock, s_sock, d_sock = run / "c.sock", run / "s.sock", run / "d.sock"
    content = _argv(VENV_BIN / "berthd-content", "--root", d / "content", "--address", c_sock)
    snap = _argv(
        VENV_BIN / "berthd-snapshotter", "--root", d / "snap", "--address", s_sock,
        "--backend", "native",
    )  # fmt: skip
    diff = _argv(
        VENV_BIN / "berthd-diff", "--address", d_sock, "--content-address", sock,
        "--root", d / "diff", "--allowed-root", d / "snap",
    )  # fmt: skip
    return f"""
version = 2
[proxy_plugins.content]
  type = "content"
  address = {_q(c_sock)}
  command = {content}
[proxy_plugins.native]
  type = "snapshot"
  address = {_q(s_sock)}
  command = {snap}
[proxy_plugins.walking]
  type = "diff"
  address = {_q(d_sock)}
  command = {diff}
{extra}"""


def metadata_berthd(d: Path, extra_toml: str = "") -> Berthd:
    """``extra_toml`` goes at the end of the config (e.g. a plugin section)."""
    return Berthd(d, config_toml(d, extra_toml), "--log-level", "info")


def etcd_toml(
    endpoints: list[str],
    prefix: str,
    node: str,
    *,
    request_timeout: str = "5s",
    lease_ttl: str = "3s",
    more: str = "",
) -> str:
    """The metadata plugin's section for the etcd backend."""
    eps = ", ".join(_q(e) for e in endpoints)
    return f"""
[plugins."io.containerd.metadata.v1.berthd"]
  backend = "etcd"
  endpoints = [{eps}]
  prefix = {_q(prefix)}
  node = {_q(node)}
  dial_timeout = "2s"
  request_timeout = {_q(request_timeout)}
  lease_ttl = {_q(lease_ttl)}
{more}"""


def plugin_details(b: Berthd, type_: str, id_: str) -> tuple[dict[str, str], str]:
    """A plugin's exports and status as ``ctr plugins ls -d`` prints them."""
    out = b.ctr("plugins", "ls", "-d", f"type=={type_}", f"id=={id_}").stdout
    exports: dict[str, str] = {}
    status = ""
    in_exports = False
    for line in out.splitlines():
        head = re.match(r"^(\w[\w ]*):\s*(.*)$", line)
        if head:
            in_exports = head.group(1) == "Exports"
            if head.group(1) == "Status":
                status = head.group(2).strip()
            continue
        if in_exports and line.strip():
            key, _, value = line.strip().partition(" ")
            exports[key] = value.strip()
    return exports, status


def metadata_exports(b: Berthd) -> dict[str, str]:
    return plugin_details(b, "io.containerd.metadata.v1", "berthd")[0]


def cluster_cli(b: Berthd, *args: str) -> subprocess.CompletedProcess[str]:
    """``berthd cluster ...`` with ``b``'s config."""
    return subprocess.run(
        [PYTHON, "-m", "daemon.cli", "--config", str(b.workdir / "config.toml"), "cluster", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def backend_toml(backend: str, request: pytest.FixtureRequest, node: str, more: str = "") -> str:
    """The metadata plugin's section for ``backend`` on the session's etcd
    (a prefix of its own), or ``more`` alone in the section for SQLite."""
    if backend != "etcd":
        return f'[plugins."io.containerd.metadata.v1.berthd"]\n{more}' if more else ""
    endpoints = request.getfixturevalue("etcd_endpoints")
    return etcd_toml(endpoints, f"/t-{uuid.uuid4().hex[:8]}", node, more=more)
