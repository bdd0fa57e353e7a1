"""A private, real containerd (Debian's package) started on temp dirs.

Used as the reference implementation: the conformance suites run against its
own services, and the end-to-end tests point it at our plugins through
``[proxy_plugins]``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import pytest

from tests.support import Proc, wait_for_socket

# Plugins a test never needs; disabling them keeps start-up fast and quiet.
QUIET_PLUGINS = ("io.containerd.grpc.v1.cri",)


def need_containerd() -> None:
    if os.geteuid() != 0:
        pytest.skip("real containerd needs root")
    for binary in ("containerd", "ctr"):
        if shutil.which(binary) is None:
            pytest.skip(f"needs {binary!r} (apt-get install containerd)")


def need_runc() -> None:
    need_containerd()
    for binary in ("runc", "containerd-shim-runc-v2"):
        if shutil.which(binary) is None:
            pytest.skip(f"needs {binary!r} (apt-get install runc containerd)")


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(_toml_str(i) for i in items) + "]"


class Containerd:
    """``with Containerd(workdir, ...) as cd:`` — a running containerd on ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        *,
        disabled_plugins: Sequence[str] = (),
        proxy_plugins: Mapping[str, Mapping[str, str]] | None = None,
        extra_toml: str = "",
        grpc_max_message: int = 0,
    ) -> None:
        self.workdir = Path(workdir)
        self.root = self.workdir / "root"
        self.state = self.workdir / "state"
        self.address = str(self.workdir / "containerd.sock")
        self.config = self.workdir / "config.toml"
        self.log = self.workdir / "containerd.log"
        lines = [
            "version = 2",
            f"root = {_toml_str(str(self.root))}",
            f"state = {_toml_str(str(self.state))}",
            f"disabled_plugins = {_toml_list([*QUIET_PLUGINS, *disabled_plugins])}",
            "[grpc]",
            f"  address = {_toml_str(self.address)}",
            *(
                [
                    f"  max_recv_message_size = {grpc_max_message}",
                    f"  max_send_message_size = {grpc_max_message}",
                ]
                if grpc_max_message
                else []
            ),
            "[ttrpc]",
            f"  address = {_toml_str(self.address + '.ttrpc')}",
            '[plugins."io.containerd.internal.v1.opt"]',
            f"  path = {_toml_str(str(self.workdir / 'opt'))}",
        ]
        for name, entry in (proxy_plugins or {}).items():
            lines.append(f"[proxy_plugins.{_toml_str(name)}]")
            lines.extend(f"  {key} = {_toml_str(value)}" for key, value in entry.items())
        self.toml = "\n".join(lines) + "\n" + extra_toml
        self.proc: Proc | None = None

    def start(self, timeout: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(self.toml)
        self.proc = Proc(["containerd", "--config", str(self.config)], self.log)
        wait_for_socket(self.address, timeout=timeout, proc=self.proc.popen)
        deadline = time.monotonic() + timeout
        while True:
            out = self.ctr("version", check=False, timeout=10)
            if out.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"containerd not answering: {out.stderr}\n{self.proc.output()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def __enter__(self) -> Containerd:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup_tasks()
        self.stop()
        # Snapshot mounts left by a failed test would keep the tree busy.
        subprocess.run(
            [
                "sh",
                "-c",
                f"grep -o ' {self.workdir}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l",
            ],
            check=False,
            capture_output=True,
        )

    def cleanup_tasks(self) -> None:
        """Kill what tests left running so no shim outlives the test."""
        if self.proc is None or self.proc.popen.poll() is not None:
            return
        for ns in self.ctr("namespaces", "ls", "-q", check=False).stdout.split():
            tasks = self.ctr("tasks", "ls", "-q", namespace=ns, check=False).stdout.split()
            for task in tasks:
                self.ctr("tasks", "kill", "-s", "SIGKILL", task, namespace=ns, check=False)
                self.ctr("tasks", "delete", "-f", task, namespace=ns, check=False)

    def ctr(
        self,
        *args: str,
        namespace: str = "default",
        check: bool = True,
        input: str | bytes | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        return ctr(
            self.address, *args, namespace=namespace, check=check, input=input, timeout=timeout
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def ctr(
    address: str,
    *args: str,
    namespace: str = "default",
    check: bool = True,
    input: str | bytes | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run the real ``ctr`` against ``address``; on failure the error names the command."""
    argv = ["ctr", "--address", address, "--namespace", namespace, *args]
    data = input.encode() if isinstance(input, str) else input
    proc = subprocess.run(argv, input=data, capture_output=True, timeout=timeout, check=False)
    result = subprocess.CompletedProcess(
        argv,
        proc.returncode,
        proc.stdout.decode(errors="replace"),
        proc.stderr.decode(errors="replace"),
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {result.returncode}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        )
    return result


def ctr_bytes(
    address: str,
    *args: str,
    namespace: str = "default",
    input: bytes | None = None,
    timeout: float = 120,
) -> bytes:
    """Run ``ctr`` and return its raw stdout (for ``content get``); raises on failure."""
    argv = ["ctr", "--address", address, "--namespace", namespace, *args]
    proc = subprocess.run(argv, input=input, capture_output=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}"
        )
    return proc.stdout
