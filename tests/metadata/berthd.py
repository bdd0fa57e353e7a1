"""berthd with the metadata layer over real plugin processes, for tests driven
by the real ``ctr``: the content store, the native snapshotter and the differ,
all under one directory (the launcher is ``tests.support.berthd.Berthd``)."""

from __future__ import annotations

import json
from pathlib import Path

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
