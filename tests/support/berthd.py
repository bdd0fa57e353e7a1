"""A real berthd process for the tests, with its plugins (the one launcher).

``Berthd(workdir, config)`` runs ``python -m daemon.cli`` on ``workdir``
(root/ and run/ under it); ``config`` is TOML text, or None to run with no
config file at all (the embedded default).  It can be stopped, killed with
-9 (with the plugin processes it started) and started again on the same
dirs.  ``plugin_proc`` starts a plugin process of our own, for the tests
where the daemon does not supervise it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import grpc

from api.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from daemon import embedded
from tests.support import PYTHON, Proc, wait_for_socket
from tests.support.containerd import ctr

BIN = Path(PYTHON).parent
# As scripts/run and deploy/systemd run the daemon (and so its plugins).
DAEMON_ENV = {"PYTHONOPTIMIZE": "2"}


def need_plugin(module: str) -> None:
    """A plugin entry point the test relies on; its absence is a failure, not a skip."""
    assert importlib.util.find_spec(module) is not None, f"{module} is missing"


def need_embedded_plugins() -> None:
    for module in ("services.content.main", "services.snapshotter.main", "services.diff.main"):
        need_plugin(module)


def embedded_toml(workdir: Path, metrics_address: str = "") -> str:
    """The embedded default for ``workdir``."""
    return embedded.default_toml(str(workdir / "root"), str(workdir / "run"), metrics_address)


_STARTUP_GC = "start-up garbage collection done"


def embedded_plugin_count() -> int:
    return 3


def child_pids(pid: int) -> dict[int, str]:
    """Live child processes of ``pid``: pid -> command line."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) != pid or fields[0] == "Z":
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                out[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
    return out


def wait_until(check: object, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        if check():  # type: ignore[operator]
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met after {timeout}s")
        time.sleep(0.05)


class Berthd:
    def __init__(
        self, workdir: Path, config: str | None, *args: str, env: dict[str, str] | None = None
    ) -> None:
        self.workdir = workdir
        self.root = workdir / "root"
        self.state = workdir / "run"
        self.address = str(self.state / "berthd.sock")
        self.config_text = config
        self.args = args
        self.env = env
        self.log = workdir / "berthd.log"
        self.proc: Proc | None = None
        self.starts = 0
        self._gc_seen = 0

    def argv(self) -> list[str]:
        argv = [PYTHON, "-m", "daemon.cli", "--root", str(self.root), "--state", str(self.state)]
        if self.config_text is not None:
            path = self.workdir / "config.toml"
            path.write_text(self.config_text)
            argv += ["--config", str(path)]
        return [*argv, *self.args]

    def start(self, timeout: float = 40.0) -> Berthd:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self._gc_seen = self.output().count(_STARTUP_GC)
        self.proc = Proc(self.argv(), self.log, env={**DAEMON_ENV, **(self.env or {})})
        try:
            wait_for_socket(self.address, timeout=timeout, proc=self.proc.popen)
        except Exception as e:
            raise RuntimeError(f"berthd did not start: {e}\n{self.output()}") from e
        return self

    def wait_startup_gc(self, timeout: float = 30.0) -> None:
        """Until this start's garbage collection ran: content written without a
        lease (e.g. ``ctr content ingest``) is fair game for it, as in containerd."""
        wait_until(
            lambda: self.output().count(_STARTUP_GC) > self._gc_seen,
            timeout,
            "start-up garbage collection",
        )

    def kill9(self) -> None:
        """SIGKILL the daemon and the plugin processes it started (they run in
        sessions of their own, so they would outlive it)."""
        assert self.proc is not None
        children = list(self.children())
        self.proc.signal(signal.SIGKILL)
        self.proc.wait()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def ctr(
        self,
        *args: str,
        check: bool = True,
        namespace: str = "default",
        input: str | bytes | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return ctr(self.address, *args, check=check, namespace=namespace, input=input, timeout=60)

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel("unix://" + self.address)

    def children(self) -> dict[int, str]:
        return child_pids(self.pid)

    def child(self, name: str) -> int:
        found = [pid for pid, cmd in self.children().items() if name in cmd]
        assert len(found) == 1, (name, self.children())
        return found[0]

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        return proc.stop(timeout)

    def __enter__(self) -> Berthd:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pids = list(self.children()) if self.proc is not None else []
        self.stop()
        for pid in pids:  # never leave plugins behind, even when a test failed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(
            [
                "sh",
                "-c",
                f"grep -o ' {self.workdir}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l",
            ],
            check=False,
            capture_output=True,
        )


@contextlib.contextmanager
def plugin_proc(name: str, workdir: Path, *args: str) -> Iterator[Proc]:
    """A plugin process started by the test (not supervised by the daemon)."""
    address = args[args.index("--address") + 1]
    proc = Proc([PYTHON, "-m", f"services.{name}.main", *args], workdir / f"{name}.log")
    try:
        wait_for_socket(address, timeout=30, proc=proc.popen)
        yield proc
    finally:
        proc.stop()


def write_code(b: Berthd, timeout: float = 1.0) -> tuple[grpc.StatusCode, str]:
    """A Content.Write STAT through the daemon, with a deadline of ``timeout`` seconds.

    Info would be answered from the daemon's metadata alone; opening an ingest
    fails while the daemon holds the content plugin down (and is answered
    without waiting for the plugin once it is up again).
    """
    with b.channel() as ch:
        stub = content_pb2_grpc.ContentStub(ch)
        req = content_pb2.WriteContentRequest(action=content_pb2.STAT, ref="fault-probe")
        try:
            for _ in stub.Write(
                iter([req]), metadata=(("containerd-namespace", "default"),), timeout=timeout
            ):
                pass
        except grpc.RpcError as e:
            return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


class CtrEvents:
    """``ctr events`` against a daemon, its lines collected by a reader thread.

    ``subscribed(poke)`` calls ``poke`` (something that publishes an event
    whose line contains the returned marker) until that line shows: ctr
    prints nothing when its subscription starts.
    """

    def __init__(self, address: str) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.proc = subprocess.Popen(
            ["ctr", "--address", address, "events"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        """The first line (from now on) containing ``text``; TimeoutError when none."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no event line with {text!r} within {timeout}s")
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return line

    def subscribed(self, poke: Callable[[], str], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            marker = poke()
            try:
                self.wait_for(marker, 0.5)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

    def stop(self) -> list[str]:
        """Stop ctr; every line seen, in order (including ones not waited for)."""
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(10)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.seen
