"""Plugin processes the daemon starts itself, kept running until it stops.

Each child runs in its own session (a Ctrl-C at the daemon's terminal is the
daemon's to handle, not the children's), with the parent-death signal set so
that a daemon killed with -9 does not leave plugins behind.  A child that
exits while the daemon runs is restarted after an exponential backoff that
resets once a child has stayed up for a while.  Each child reports readiness
as under systemd (``READY=1`` to its $NOTIFY_SOCKET, an abstract socket the
supervisor listens on), so the daemon dials it the moment it serves instead
of on its next backoff tick.  ``stop`` sends SIGTERM to
every child, waits, then kills what is left and removes sockets they left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from daemon import forkspawn
from daemon.forkspawn import find_executable
from daemon.metrics import DaemonMetrics
from services.harness import spawn
from services.harness.server import AddressInUse, remove_stale_socket

log = logging.getLogger(__name__)

# Run as `python -c _TRAMPOLINE PARENT_PID EXECUTABLE ARGS...`: ask the kernel
# for SIGTERM when the daemon dies, make sure it has not died already, then
# become the plugin.
_TRAMPOLINE = """
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    socket: str = ""  # removed after the child when nobody answers on it


@dataclass
class Child:
    spec: ChildSpec
    executable: str
    process: spawn.Process | None = None
    started_at: float = 0.0
    restarts: int = 0
    exits: int = 0
    failures: int = 0
    watcher: asyncio.Task[None] | None = None
    # Set each time the process exits (cleared when it is started again).
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    # Set when the process reports READY=1 (cleared when it is started again).
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    on_ready: list[Callable[[], None]] = field(default_factory=list)
    # What the child told in its notifications besides READY (e.g. METRICS_ADDRESS).
    status: dict[str, str] = field(default_factory=dict)
    notify: socket.socket | None = None

    @property
    def pid(self) -> int | None:
        p = self.process
        return p.pid if p is not None and p.returncode is None else None


def _remove_stale_socket(path: str) -> None:
    # A live (or possibly live) socket is left alone: the child will report
    # the address in use rather than us stealing it.
    with contextlib.suppress(AddressInUse):
        remove_stale_socket(path)


class Supervisor:
    def __init__(
        self,
        metrics: DaemonMetrics | None = None,
        *,
        stop_timeout: float = 10.0,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
        stable_after: float = 10.0,
    ) -> None:
        self.metrics = metrics
        self.stop_timeout = stop_timeout
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self._children: dict[str, Child] = {}
        self._stopping = False
        self._wake = asyncio.Event()

    @property
    def children(self) -> list[Child]:
        return list(self._children.values())

    def child(self, name: str) -> Child | None:
        return self._children.get(name)

    async def _spawn(self, child: Child) -> None:
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)  # the daemon's own readiness is its own to report
        env.update(child.spec.env)
        env["NOTIFY_SOCKET"] = self._listen(child)
        entry = forkspawn.entry_point(child.executable) if forkspawn.enabled() else None
        how = "started"
        if entry is not None and forkspawn.can_fork():
            # One of our own plugins, and a child parked for it or nothing
            # but this thread running: fork, sharing pages (daemon.forkspawn).
            child.process = forkspawn.fork(entry, child.spec.argv, env, child.executable)
            how = "forked"
        else:
            # No preexec_fn: running Python between fork and exec in a process
            # with gRPC threads can crash the child; the trampoline sets the
            # parent-death signal after exec instead (and lets vfork be used).
            # spawn, not the loop's subprocess_exec: on uvloop the plugin would
            # keep descriptors of ours (services/harness/spawn.py).
            child.process = spawn.start(
                [
                    sys.executable,
                    "-S",
                    "-I",
                    "-c",
                    _TRAMPOLINE,
                    str(os.getpid()),
                    child.executable,
                    *child.spec.argv[1:],
                ],
                env=env,
                stdin=spawn.DEVNULL,
                start_new_session=True,
            )
        child.started_at = time.monotonic()
        child.exited.clear()
        child.ready.clear()
        log.info(
            "%s plugin %s (pid %d): %s",
            how,
            child.spec.name,
            child.process.pid,
            " ".join(child.spec.argv),
        )

    def _listen(self, child: Child) -> str:
        """The child's $NOTIFY_SOCKET (an abstract datagram socket, made once)."""
        if child.notify is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            sock.setblocking(False)
            sock.bind(f"\0berthd-{os.getpid()}-{secrets.token_hex(6)}-notify")
            asyncio.get_running_loop().add_reader(sock.fileno(), self._notified, child)
            child.notify = sock
        name = child.notify.getsockname()
        return "@" + (name[1:] if isinstance(name, str) else name[1:].decode())

    def _notified(self, child: Child) -> None:
        assert child.notify is not None
        while True:
            try:
                data = child.notify.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.debug("plugin %s: notify socket: %s", child.spec.name, e)
                return
            lines = data.decode("utf-8", "replace").split("\n")
            for line in lines:
                key, sep, value = line.partition("=")
                if sep and key != "READY":
                    child.status[key] = value
            if "READY=1" in lines and not child.ready.is_set():
                child.ready.set()
                log.debug("plugin %s reports ready", child.spec.name)
                for fn in child.on_ready:
                    try:
                        fn()
                    except Exception:
                        log.exception("plugin %s: readiness listener failed", child.spec.name)

    async def start(self, spec: ChildSpec) -> Child:
        """Start and supervise ``spec``; NotFound when its executable does not exist."""
        if spec.name in self._children:
            raise ValueError(f"plugin process {spec.name} already supervised")
        child = Child(spec, find_executable(spec.argv[0]))
        if spec.socket:
            _remove_stale_socket(spec.socket)
        await self._spawn(child)
        self._children[spec.name] = child
        child.watcher = asyncio.create_task(self._supervise(child), name=f"supervise-{spec.name}")
        return child

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _supervise(self, child: Child) -> None:
        while not self._stopping:
            if child.process is not None:
                code = await child.process.wait()
                child.exits += 1
                child.exited.set()
                if self._stopping:
                    return
                ran = time.monotonic() - child.started_at
                if ran >= self.stable_after:
                    child.failures = 0
                log.warning(
                    "plugin %s (pid %d) exited with %s after %.1fs",
                    child.spec.name,
                    child.process.pid,
                    code,
                    ran,
                )
                if child.spec.socket:
                    _remove_stale_socket(child.spec.socket)
            delay = min(self.max_backoff, self.min_backoff * 2**child.failures)
            child.failures += 1
            await self._pause(delay)
            if self._stopping:
                return
            try:
                await self._spawn(child)
            except OSError as e:
                log.error("restarting plugin %s failed: %s", child.spec.name, e)
                child.process = None
                continue
            child.restarts += 1
            if self.metrics is not None:
                self.metrics.restarts.labels(child.spec.name).inc()

    def kill(self, child: Child, reason: str) -> None:
        """SIGKILL a child that is alive but useless (hung); it is restarted as
        after a crash."""
        if child.process is None or child.process.returncode is not None:
            return
        log.warning(
            "plugin %s (pid %d): %s; killing it", child.spec.name, child.process.pid, reason
        )
        with contextlib.suppress(ProcessLookupError):
            child.process.kill()
        if self.metrics is not None:
            self.metrics.hung_kills.labels(child.spec.name).inc()

    async def stop(self) -> None:
        """SIGTERM every child, SIGKILL after ``stop_timeout``, reap, remove sockets."""
        self._stopping = True
        self._wake.set()
        forkspawn.release()  # children parked for plugins that never came
        live = [c for c in self._children.values() if c.pid is not None]
        for c in live:
            assert c.process is not None
            with contextlib.suppress(ProcessLookupError):
                c.process.send_signal(signal.SIGTERM)

        async def reap(c: Child) -> None:
            assert c.process is not None
            try:
                await asyncio.wait_for(c.process.wait(), self.stop_timeout)
            except TimeoutError:
                log.warning(
                    "plugin %s did not stop in %.0fs; killing it", c.spec.name, self.stop_timeout
                )
                with contextlib.suppress(ProcessLookupError):
                    c.process.kill()
                await c.process.wait()

        await asyncio.gather(*(reap(c) for c in live))
        for c in self._children.values():
            if c.watcher is not None:
                c.watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await c.watcher
            if c.spec.socket:
                _remove_stale_socket(c.spec.socket)
            if c.notify is not None:
                asyncio.get_running_loop().remove_reader(c.notify.fileno())
                c.notify.close()
                c.notify = None
        log.info("stopped %d supervised plugin(s)", len(live))
