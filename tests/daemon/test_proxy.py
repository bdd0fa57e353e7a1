"""ProxyConnection and Supervisor on their own, against real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from api import errdefs
from daemon.metrics import DaemonMetrics
from daemon.proxy import ProxyConnection
from daemon.supervisor import ChildSpec, Supervisor, find_executable
from services.harness.metrics import new_registry
from tests.support import PYTHON, Proc, short_tmpdir, wait_for_socket

SLEEP_METHOD = "/berthd.test.Slow/Sleep"


class FakeContext:
    """The two things a relay reads from the server-side context."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("containerd-namespace", "default"), ("user-agent", "test"))

    def time_remaining(self) -> float | None:
        return 10.0


def harness(sock: str, log: Path) -> Proc:
    proc = Proc([PYTHON, "-m", "tests.harness.harness_proc", "--address", sock], log)
    wait_for_socket(sock, proc=proc.popen)
    return proc


async def test_down_fails_fast_then_up_is_used_at_once() -> None:
    with short_tmpdir("bp") as d:
        sock = str(d / "h.sock")
        metrics = DaemonMetrics(new_registry())
        conn = ProxyConnection("slow", "io.containerd.test.v1", sock, metrics)
        conn.start()
        ctx = FakeContext()
        try:
            # nothing there yet: Unavailable at once, naming the plugin and socket
            with pytest.raises(errdefs.Unavailable) as info:
                await asyncio.wait_for(conn.unary(SLEEP_METHOD, b"0", ctx), 1.0)  # type: ignore[arg-type]
            assert str(info.value) == (
                f"proxy plugin slow (io.containerd.test.v1) at {sock}: not reachable: unavailable"
            )
            proc = harness(sock, d / "h.log")
            try:
                # the first call after the socket answers is served
                assert await conn.unary(SLEEP_METHOD, b"0", ctx) == b"slept"  # type: ignore[arg-type]
                assert conn.up
                up = metrics.registry.get_sample_value(
                    "berthd_proxy_plugin_up", {"plugin": "slow", "type": "io.containerd.test.v1"}
                )
                assert up == 1
            finally:
                await asyncio.to_thread(proc.stop)  # keep the loop free to end our calls
            # its health stream tells the monitor at once
            assert await asyncio.wait_for(_until(lambda: not conn.up), 5)
            with pytest.raises(errdefs.Unavailable):
                await conn.unary(SLEEP_METHOD, b"0", ctx)  # type: ignore[arg-type]
            calls = metrics.registry.get_sample_value(
                "berthd_proxy_calls_total",
                {"plugin": "slow", "method": "Sleep", "grpc_code": "Unavailable"},
            )
            assert calls == 2
        finally:
            await conn.close()


async def test_plugin_dying_mid_call_is_unavailable() -> None:
    with short_tmpdir("bq") as d:
        sock = str(d / "h.sock")
        proc = harness(sock, d / "h.log")
        conn = ProxyConnection("slow", "io.containerd.test.v1", sock)
        conn.start()
        try:
            assert await conn.wait_up(10)
            call = asyncio.ensure_future(conn.unary(SLEEP_METHOD, b"30", FakeContext()))  # type: ignore[arg-type]
            await asyncio.sleep(0.3)
            proc.signal(signal.SIGKILL)
            with pytest.raises(errdefs.Unavailable) as info:
                await asyncio.wait_for(call, 5)
            assert f"at {sock}" in str(info.value)
        finally:
            await asyncio.to_thread(proc.stop)
            await conn.close()


async def _until(check: Callable[[], bool]) -> bool:
    """Poll ``check``: the states polled here change in other processes, not by events."""
    while not check():  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    return True


async def test_supervisor_restarts_with_backoff_and_stops_cleanly() -> None:
    script = "import sys, time; time.sleep(float(sys.argv[1]))"
    metrics = DaemonMetrics(new_registry())
    sup = Supervisor(metrics, min_backoff=0.05, max_backoff=0.2, stop_timeout=5)
    crashing = await sup.start(ChildSpec("crashing", (PYTHON, "-c", script, "0")))
    steady = await sup.start(ChildSpec("steady", (PYTHON, "-c", script, "60")))
    await asyncio.wait_for(_until(lambda: crashing.restarts >= 3), 20)
    first = steady.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await asyncio.wait_for(_until(lambda: steady.pid not in (None, first)), 20)
    assert (
        metrics.registry.get_sample_value("berthd_supervised_restarts_total", {"plugin": "steady"})
        == 1
    )
    pids = [c.pid for c in sup.children if c.pid]
    await sup.stop()
    assert all(c.pid is None for c in sup.children)
    for pid in pids:
        assert pid is not None and not Path(f"/proc/{pid}").exists()


def test_find_executable_looks_beside_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert find_executable("berthd-content") == os.path.join(
        os.path.dirname(sys.executable), "berthd-content"
    )
    with pytest.raises(errdefs.NotFound, match="no-such-plugin: executable not found"):
        find_executable("no-such-plugin")
