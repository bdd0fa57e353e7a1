"""Helpers shared by the test suites: temp sockets, real processes, skips."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def is_root() -> bool:
    return os.geteuid() == 0


def need_root() -> None:
    if not is_root():
        pytest.skip("needs root")


def need_binary(*names: str) -> None:
    for name in names:
        if shutil.which(name) is None:
            pytest.skip(f"needs {name!r} on PATH (apt-get install the Debian package)")


@contextlib.contextmanager
def short_tmpdir(prefix: str = "bt") -> Iterator[Path]:
    """A temp dir with a short path: unix socket paths are limited to 107 bytes."""
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def wait_for_socket(
    path: str | Path, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until something accepts connections on the unix socket ``path``."""
    deadline = time.monotonic() + timeout
    last: OSError | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {path} was ready")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(str(path))
                return
            except OSError as e:
                last = e
        time.sleep(0.05)
    raise TimeoutError(f"{path} not ready after {timeout}s: {last}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A real child process, stopped by its pid."""

    def __init__(self, argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.log = log
        full_env = dict(os.environ)
        full_env.update(env or {})
        # The child keeps its own descriptor of the log; ours closes at once.
        with open(log, "ab") as logf:
            self.popen = subprocess.Popen(
                self.argv,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=full_env,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def wait(self, timeout: float = 20.0) -> int:
        return self.popen.wait(timeout)

    def stop(self, timeout: float = 20.0) -> int:
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(timeout)
        return self.popen.returncode
