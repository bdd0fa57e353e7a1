"""A plugin going away never takes the daemon down, and coming back needs no restart."""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from api.containerd.services.diff.v1 import diff_pb2, diff_pb2_grpc
from api.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from api.containerd.types import descriptor_pb2
from api.grpc.health.v1 import health_pb2, health_pb2_grpc
from tests.support import PYTHON, free_port, need_binary, need_root, short_tmpdir
from tests.support.berthd import (
    Berthd,
    embedded_plugin_count,
    embedded_toml,
    need_plugin,
    plugin_proc,
    wait_until,
    write_code,
)

pytestmark = [pytest.mark.containerd]

NS = (("containerd-namespace", "default"),)


@pytest.fixture
def workdir() -> Iterator[Path]:
    need_binary("ctr")
    need_plugin("services.content.main")
    need_plugin("services.snapshotter.main")
    with short_tmpdir("bf") as d:
        yield d


def separate_config(d: Path, metrics: str = "") -> str:
    """Plugins run by the test itself; one entry with a type nobody knows."""
    return f"""
version = 2
[metrics]
  address = "{metrics}"
[proxy_plugins.content]
  type = "content"
  address = "{d}/p/content.sock"
  platform = "linux/arm64/v8"
  exports = {{ root = "{d}/content" }}
  capabilities = ["cap-a", "cap-b"]
[proxy_plugins.native]
  type = "snapshot"
  address = "{d}/p/snap.sock"
[proxy_plugins.odd]
  type = "frobnicator"
  address = "{d}/p/odd.sock"
"""


PROBE = b"probe\n"
PROBE_DIGEST = "sha256:" + hashlib.sha256(PROBE).hexdigest()


def content_args(d: Path) -> tuple[str, ...]:
    return ("--root", str(d / "content"), "--address", str(d / "p" / "content.sock"))


def snap_args(d: Path) -> tuple[str, ...]:
    return (
        "--root", str(d / "snap"), "--address", str(d / "p" / "snap.sock"), "--backend", "native",
    )  # fmt: skip


def health(b: Berthd, service: str) -> int:
    with b.channel() as ch:
        req = health_pb2.HealthCheckRequest(service=service)
        return int(health_pb2_grpc.HealthStub(ch).Check(req, timeout=5).status)


def test_stopped_plugin_fails_fast_and_is_used_again(workdir: Path) -> None:
    d = workdir
    with (
        plugin_proc("snapshotter", d, *snap_args(d)),
        Berthd(d, separate_config(d)) as b,
    ):
        with plugin_proc("content", d, *content_args(d)):
            wait_until(lambda: b.ctr("content", "ls", check=False).returncode == 0, what="content")
            b.wait_startup_gc()  # it waited for the content plugin; the probe has no lease
            assert write_code(b)[0] == grpc.StatusCode.OK
            b.ctr("content", "ingest", "probe", input=PROBE)
            b.ctr("content", "label", PROBE_DIGEST, "containerd.io/gc.root=probe")
        # The content plugin is gone (SIGTERM, socket removed).
        code, details = write_code(b, timeout=1.0)
        assert code == grpc.StatusCode.UNAVAILABLE, (code, details)
        assert f"proxy plugin content (io.containerd.content.v1) at {d}/p/content.sock" in details
        # Reading bytes needs the plugin. (An ingest would not fail: ctr, like
        # containerd's client, retries Unavailable when opening a writer,
        # since containerd also uses it for "ref locked".)
        out = b.ctr("content", "get", PROBE_DIGEST, check=False)
        assert out.returncode != 0
        assert "proxy plugin content" in out.stderr and "unavailable" in out.stderr
        # The metadata still answers for what it knows.
        assert b.ctr("content", "ls").returncode == 0
        # everything else keeps answering
        assert "Server:" in b.ctr("version").stdout
        assert "content" in b.ctr("plugins", "ls").stdout
        assert b.ctr("snapshots", "--snapshotter", "native", "ls").returncode == 0
        assert health(b, "") == health_pb2.HealthCheckResponse.SERVING
        assert health(b, "containerd.services.content.v1.Content") == (
            health_pb2.HealthCheckResponse.NOT_SERVING
        )
        # Back again: the very first call after its socket answers is served.
        with plugin_proc("content", d, *content_args(d)):
            assert write_code(b, timeout=5.0)[0] == grpc.StatusCode.OK
            assert b.ctr("content", "ls").returncode == 0
            wait_until(
                lambda: (
                    health(b, "containerd.services.content.v1.Content")
                    == health_pb2.HealthCheckResponse.SERVING
                ),
                what="content healthy",
            )


def test_plugin_down_at_start(workdir: Path) -> None:
    d = workdir
    with Berthd(d, separate_config(d)) as b:
        assert "Server:" in b.ctr("version").stdout
        with b.channel() as ch:
            stub = snapshots_pb2_grpc.SnapshotsStub(ch)
            req = snapshots_pb2.PrepareSnapshotRequest(snapshotter="native", key="x")
            with pytest.raises(grpc.RpcError) as info:
                stub.Prepare(req, metadata=NS, timeout=1.0)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert f"at {d}/p/snap.sock" in (info.value.details() or "")
        with plugin_proc("snapshotter", d, *snap_args(d)):
            b.ctr("snapshots", "--snapshotter", "native", "prepare", "k")
            assert "k" in b.ctr("snapshots", "--snapshotter", "native", "ls").stdout


def test_proxy_entries_in_plugins_ls(workdir: Path) -> None:
    """Platform, exports and capabilities as configured; a bad entry is an error, not a crash."""
    d = workdir
    with Berthd(d, separate_config(d)) as b:
        content = b.ctr("plugins", "ls", "-d", "type==io.containerd.content.v1").stdout
        assert re.search(r"Platforms:\s+linux/arm64\n", content), content
        assert re.search(rf"root\s+{d}/content\n", content), content
        assert re.search(rf"address\s+{d}/p/content.sock\n", content), content
        assert re.search(r"Capabilities:\s+cap-a,cap-b\n", content), content
        table = {
            tuple(r.split()[:2]): r.split()[-1] for r in b.ctr("plugins", "ls").stdout.splitlines()
        }
        assert table[("frobnicator", "odd")] == "error"
        detailed = b.ctr("plugins", "ls", "-d", "id==odd").stdout
        assert "unknown proxy plugin type 'frobnicator'" in detailed
        assert "Code:" in detailed and "InvalidArgument" in detailed


@pytest.mark.root
@pytest.mark.overlay
def test_supervised_plugin_killed_is_restarted(workdir: Path) -> None:
    need_root()
    d = workdir
    port = free_port()
    with Berthd(d, embedded_toml(d, f"127.0.0.1:{port}")) as b:
        b.wait_startup_gc()  # the blob below is held by no lease
        b.ctr("content", "ingest", "before-kill", input=b"kept across restarts\n")
        old = b.child("berthd-content")
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: old not in b.children(), what="old plugin reaped")

        digest = "sha256:" + hashlib.sha256(b"kept across restarts\n").hexdigest()

        def served_again() -> bool:
            # The listing comes from the daemon's metadata; the bytes only
            # from the (restarted) plugin.
            out = b.ctr("content", "get", digest, check=False)
            return out.returncode == 0 and out.stdout == "kept across restarts\n"

        wait_until(served_again, timeout=30, what="content served again")
        new = b.child("berthd-content")
        assert new != old
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/metrics", timeout=10) as r:
            page = r.read().decode()
        assert 'berthd_supervised_restarts_total{plugin="content"} 1.0' in page


@pytest.mark.root
@pytest.mark.overlay
def test_sigterm_leaves_no_process_or_socket(workdir: Path) -> None:
    need_root()
    d = workdir
    b = Berthd(d, embedded_toml(d)).start()
    try:
        wait_until(lambda: len(b.children()) == embedded_plugin_count(), what="all plugins")
        kids = list(b.children())
        assert b.ctr("content", "ls").returncode == 0
        assert b.stop() == 0
    finally:
        b.__exit__(None, None, None)
    for pid in kids:
        assert not Path(f"/proc/{pid}").exists(), f"plugin {pid} outlived the daemon"
    assert sorted(p.name for p in (d / "run").iterdir() if p.is_socket()) == []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            assert str(d).encode() not in cmd, cmd


@pytest.mark.root
@pytest.mark.overlay
def test_daemon_killed_takes_its_plugins_along(workdir: Path) -> None:
    need_root()
    d = workdir
    with Berthd(d, embedded_toml(d)) as b:
        wait_until(lambda: len(b.children()) == embedded_plugin_count(), what="all plugins")
        kids = list(b.children())
        assert b.proc is not None
        b.proc.signal(signal.SIGKILL)
        b.proc.wait()
        wait_until(
            lambda: not any(Path(f"/proc/{pid}").exists() for pid in kids),
            what="plugins gone after the daemon",
        )
        # The stale daemon socket is replaced by the next start.
        b.start()
        assert "Server:" in b.ctr("version").stdout
        start = time.monotonic()
        wait_until(lambda: b.ctr("content", "ls", check=False).returncode == 0, what="content")
        assert time.monotonic() - start < 60


def test_sigterm_drains_relayed_calls_before_stopping_plugins(workdir: Path) -> None:
    """A call in flight at SIGTERM still reaches its (supervised) plugin and completes."""
    d = workdir
    sock = f"{d}/p/slow.sock"
    cfg = (
        'version = 2\n[proxy_plugins.slow]\ntype = "diff"\n'
        f'address = "{sock}"\n'
        f'command = ["{PYTHON}", "-m", "tests.daemon.fake_differ", "--address", "{sock}",'
        ' "--name", "slow", "--mode", "slow", "--delay", "1.5"]\n'
    )
    b = Berthd(d, cfg).start()
    try:
        wait_until(lambda: Path(sock).exists(), what="slow differ")
        kids = list(b.children())
        with b.channel() as ch, concurrent.futures.ThreadPoolExecutor(1) as pool:
            stub = diff_pb2_grpc.DiffStub(ch)
            # wait until the daemon relays calls, then start one that takes 1.5 s
            req = diff_pb2.ApplyRequest(diff=descriptor_pb2.Descriptor(digest="sha256:" + "1" * 64))
            stub.Apply(req, metadata=NS, timeout=10, wait_for_ready=True)
            pending = pool.submit(stub.Apply, req, metadata=NS, timeout=20)
            time.sleep(0.5)
            assert b.proc is not None
            b.proc.signal(signal.SIGTERM)
            applied = pending.result(timeout=30).applied
        assert applied.annotations["served-by"] == "slow"
        assert b.proc.wait(30) == 0
    finally:
        b.__exit__(None, None, None)
    assert not any(Path(f"/proc/{pid}").exists() for pid in kids)
    assert not Path(sock).exists() and not Path(b.address).exists()
