"""A real berthd process with the metadata layer and real plugin processes,
for tests driven by the real ``ctr``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path
from types import TracebackType

from tests.support import PYTHON, REPO, Proc, wait_for_socket
from tests.support.containerd import ctr

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
    sock = d / "berthd.sock"
    c_sock, s_sock, d_sock = d / "c.sock", d / "s.sock", d / "d.sock"
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
root = {_q(d / "root")}
state = {_q(d / "state")}
[grpc]
  address = {_q(sock)}
[ttrpc]
  address = {_q(str(sock) + ".ttrpc")}
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


class Berthd:
    def __init__(self, d: Path, extra_toml: str = "") -> None:
        self.dir = d
        d.mkdir(parents=True, exist_ok=True)
        self.address = str(d / "berthd.sock")
        self.config = d / "config.toml"
        self.config.write_text(config_toml(d, extra_toml))
        self.proc: Proc | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.proc = Proc(
            [
                PYTHON,
                "-m",
                "daemon.cli",
                "--config",
                str(self.config),
                "--log-level",
                "info",
            ],
            self.dir / f"berthd-{self.starts}.log",
            env={"PYTHONPATH": str(REPO)},
        )
        wait_for_socket(self.address, timeout=60, proc=self.proc.popen)  # type: ignore[arg-type]
        # Serving means the plugins were given their moment; wait for them to answer.
        for _ in range(200):
            out = ctr(self.address, "plugins", "ls", check=False)
            if out.returncode == 0 and "content" in out.stdout:
                return
            subprocess.run(["sleep", "0.05"], check=False)

    def kill9(self) -> None:
        """SIGKILL the daemon and the plugin processes it started (they run in
        sessions of their own, so they would outlive it)."""
        assert self.proc is not None
        children = self.plugin_pids()
        self.proc.signal(signal.SIGKILL)
        self.proc.wait()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc = None

    def plugin_pids(self) -> list[int]:
        """The plugin processes started for this daemon: their command lines name our dir."""
        out = []
        mark = str(self.dir).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if mark in cmdline and b"berthd-" in cmdline and b"daemon.cli" not in cmdline:
                out.append(int(entry.name))
        return out

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None
        for pid in self.plugin_pids():  # left by a daemon that did not stop them
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def ctr(
        self,
        *args: str,
        namespace: str = "default",
        check: bool = True,
        input: str | bytes | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return ctr(self.address, *args, namespace=namespace, check=check, input=input)

    def log(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.dir.glob("berthd-*.log"))
        )

    def __enter__(self) -> Berthd:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
