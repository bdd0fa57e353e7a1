"""The daemons the tests run against, each on its own temp dirs and sockets.

``containerd``: Debian's containerd 1.6.20 (the reference), through
tests/support/containerd.py.  ``berthd``: berthd's embedded default (no
config file), through tests/support/berthd.py.  ``socket:PATH``: a daemon
someone else runs; it is neither started nor stopped here.  After a run,
tasks left in the daemon are killed and any shim still serving one of our
sockets is stopped by pid, so nothing outlives the harness.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from tests.support import wait_for_socket
from tests.support.berthd import Berthd
from tests.support.containerd import Containerd, ctr


def cleanup_tasks(address: str) -> None:
    """Kill and delete every task the daemon still has, in every namespace."""
    namespaces = ctr(address, "namespaces", "ls", "-q", check=False, timeout=30)
    for ns in namespaces.stdout.split():
        tasks = ctr(address, "tasks", "ls", "-q", namespace=ns, check=False, timeout=30)
        for task in tasks.stdout.split():
            ctr(address, "tasks", "kill", "-s", "SIGKILL", task, namespace=ns, check=False)
            ctr(address, "tasks", "delete", "-f", task, namespace=ns, check=False)


def stray_processes(marker: str) -> list[int]:
    """Pids of processes whose command line names ``marker`` (a path of ours)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            pids.append(int(entry))
    return pids


def kill_strays(marker: str) -> list[int]:
    pids = stray_processes(marker)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


@contextlib.contextmanager
def started(target: str, workdir: Path) -> Iterator[str]:
    """Start ``target`` (containerd | berthd | socket:PATH); yields its gRPC address."""
    if target.startswith("socket:"):
        address = target.split(":", 1)[1]
        wait_for_socket(address, timeout=10)
        yield address
        return
    if target == "containerd":
        cd = Containerd(workdir / "containerd")
        with cd:
            try:
                yield cd.address
            finally:
                cleanup_tasks(cd.address)
        kill_strays(str(workdir / "containerd"))
        return
    if target == "berthd":
        bd = Berthd(workdir / "berthd", None)
        with bd:
            try:
                yield bd.address
            finally:
                cleanup_tasks(bd.address)
        kill_strays(str(workdir / "berthd"))
        return
    raise ValueError(f"unknown target {target!r} (containerd, berthd or socket:PATH)")


def daemon_log(target: str, workdir: Path) -> Path | None:
    for name, log in (("containerd", "containerd.log"), ("berthd", "berthd.log")):
        if target == name:
            return workdir / name / log
    return None
