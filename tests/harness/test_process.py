"""The harness as a real process: health, metrics, promtool, signals, sockets."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.grpc.health.v1 import health_pb2, health_pb2_grpc
from tests.support import PYTHON, Proc, free_port, short_tmpdir, wait_for_socket


@pytest.fixture
def proc_dir() -> Iterator[Path]:
    with short_tmpdir() as d:
        yield d


def start(d: Path, *extra: str) -> tuple[Proc, str, str]:
    sock = str(d / "run" / "h.sock")
    metrics = f"127.0.0.1:{free_port()}"
    proc = Proc(
        [
            PYTHON,
            "-m",
            "tests.harness.harness_proc",
            "--address",
            sock,
            "--metrics-address",
            metrics,
            *extra,
        ],
        d / "proc.log",
    )
    wait_for_socket(sock, proc=proc.popen)
    return proc, sock, metrics


def health(sock: str, service: str = "") -> int:
    with grpc.insecure_channel(f"unix://{sock}") as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status)


def scrape(metrics: str) -> str:
    with urllib.request.urlopen(f"http://{metrics}/v1/metrics", timeout=5) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        return str(r.read().decode())


def test_serves_health_metrics_and_stops_cleanly(proc_dir: Path) -> None:
    proc, sock, metrics = start(proc_dir)
    try:
        assert health(sock) == health_pb2.HealthCheckResponse.SERVING
        assert health(sock, "berthd.test.Slow") == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as info:
            health(sock, "no.such.Service")
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert oct(os.stat(sock).st_mode & 0o777) == oct(0o660)

        page = scrape(metrics)
        families = {f.name: f for f in text_string_to_metric_families(page)}
        handled = families["grpc_server_handled"]
        codes = {
            (s.labels["grpc_method"], s.labels["grpc_code"]): s.value
            for s in handled.samples
            if s.name == "grpc_server_handled_total"
        }
        assert codes[("Check", "OK")] == 2
        assert codes[("Check", "NotFound")] == 1
        check = next(s for s in handled.samples if s.labels["grpc_method"] == "Check")
        assert check.labels["grpc_service"] == "grpc.health.v1.Health"
        assert check.labels["grpc_type"] == "unary"
        for name in (
            "grpc_server_started",
            "grpc_server_msg_received",
            "grpc_server_msg_sent",
            "grpc_server_handling_seconds",
            "process_resident_memory_bytes",
        ):
            assert name in families, name

        with pytest.raises(urllib.error.HTTPError) as notfound:
            urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5)
        assert notfound.value.code == 404
        notfound.value.close()
    finally:
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0, proc.output()
    assert not os.path.exists(sock)


@pytest.mark.promtool
def test_promtool_accepts_metrics_page(proc_dir: Path) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("needs promtool (Debian package prometheus)")
    proc, sock, metrics = start(proc_dir)
    try:
        health(sock)
        out = subprocess.run(
            ["promtool", "check", "metrics"],
            input=scrape(metrics).encode(),
            capture_output=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stdout + out.stderr
    finally:
        assert proc.stop() == 0


def test_sigterm_drains_in_flight_calls(proc_dir: Path) -> None:
    proc, sock, _ = start(proc_dir)
    result: dict[str, object] = {}

    def slow_call() -> None:
        with grpc.insecure_channel(f"unix://{sock}") as ch:
            try:
                result["reply"] = ch.unary_unary("/berthd.test.Slow/Sleep")(b"1.5", timeout=10)
            except grpc.RpcError as e:
                result["error"] = e.code()

    t = threading.Thread(target=slow_call)
    t.start()
    time.sleep(0.5)
    proc.signal(signal.SIGTERM)
    t.join(15)
    assert proc.wait() == 0, proc.output()
    assert result == {"reply": b"slept"}
    assert not os.path.exists(sock)


def test_second_signal_forces_exit(proc_dir: Path) -> None:
    marker = proc_dir / "hooks-ran"
    sock = str(proc_dir / "run" / "h.sock")
    proc = Proc(
        [PYTHON, "-m", "tests.harness.harness_proc", "--address", sock, "--shutdown-timeout", "60"],
        proc_dir / "proc.log",
        env={"HARNESS_TEST_STOP_MARKER": str(marker)},
    )
    wait_for_socket(sock, proc=proc.popen)
    slow = grpc.insecure_channel(f"unix://{sock}")
    t = threading.Thread(
        target=lambda: _ignore_errors(
            lambda: slow.unary_unary("/berthd.test.Slow/Sleep")(b"30", timeout=40)
        )
    )
    t.start()
    time.sleep(0.5)
    proc.signal(signal.SIGTERM)
    time.sleep(0.5)
    assert proc.popen.poll() is None  # still draining the 30 s call
    proc.signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0, proc.output()
    t.join(15)
    slow.close()
    # Forcing cut the drain short, not the teardown.
    assert marker.read_text() == "hooks ran\n"
    assert not os.path.exists(sock)


def _ignore_errors(fn: Callable[[], object]) -> None:
    with contextlib.suppress(grpc.RpcError):
        fn()


def test_stale_socket_is_replaced_live_one_is_refused(proc_dir: Path) -> None:
    sock = proc_dir / "run" / "h.sock"
    sock.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))
    stale.close()  # the file stays, nobody listens: a crashed predecessor
    proc, _, _ = start(proc_dir)
    try:
        assert health(str(sock)) == health_pb2.HealthCheckResponse.SERVING
        second = Proc(
            [PYTHON, "-m", "tests.harness.harness_proc", "--address", str(sock)],
            proc_dir / "second.log",
        )
        assert second.wait() == 1
        out = second.output()
        assert "another process is serving on this socket" in out
        assert "Traceback" not in out
        assert health(str(sock)) == health_pb2.HealthCheckResponse.SERVING
    finally:
        assert proc.stop() == 0


def test_sd_notify_ready(proc_dir: Path) -> None:
    notify_path = str(proc_dir / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify_path)
    listener.settimeout(15)
    sock = str(proc_dir / "h.sock")
    proc = Proc(
        [PYTHON, "-m", "tests.harness.harness_proc", "--address", sock],
        proc_dir / "proc.log",
        env={"NOTIFY_SOCKET": notify_path},
    )
    try:
        assert listener.recv(100) == b"READY=1"
        wait_for_socket(sock, proc=proc.popen)
        proc.signal(signal.SIGTERM)
        assert listener.recv(100) == b"STOPPING=1"
        assert proc.wait() == 0
    finally:
        proc.stop()
        listener.close()


def test_json_logs(proc_dir: Path) -> None:
    import json

    proc, _, _ = start(proc_dir, "--log-format", "json")
    assert proc.stop() == 0
    lines = [json.loads(line) for line in proc.output().splitlines() if line.startswith("{")]
    assert any("serving on" in entry["msg"] for entry in lines)
    assert all({"time", "level", "msg"} <= entry.keys() for entry in lines)
