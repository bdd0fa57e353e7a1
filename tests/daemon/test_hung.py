"""A plugin that hangs (SIGSTOP: socket open, nothing answered) must not hang
the daemon: its calls fail with Unavailable naming it, everything else keeps
answering, garbage collection goes on without it, and a supervised one is
killed and restarted."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.daemon.test_faults import (
    PROBE,
    PROBE_DIGEST,
    content_args,
    separate_config,
    snap_args,
)
from tests.support import free_port, need_binary, need_root, short_tmpdir
from tests.support.berthd import (
    Berthd,
    embedded_toml,
    need_plugin,
    plugin_proc,
    wait_until,
    write_code,
)


@pytest.fixture
def workdir() -> Iterator[Path]:
    need_binary("ctr")
    need_plugin("services.content.main")
    need_plugin("services.snapshotter.main")
    with short_tmpdir("bh") as d:
        yield d


def test_stopped_plugin_fails_its_calls_and_nothing_else(workdir: Path) -> None:
    d = workdir
    with (
        plugin_proc("snapshotter", d, *snap_args(d)),
        plugin_proc("content", d, *content_args(d)) as content,
        Berthd(d, separate_config(d)) as b,
    ):
        wait_until(lambda: b.ctr("content", "ls", check=False).returncode == 0, what="content")
        b.wait_startup_gc()
        b.ctr("content", "ingest", "probe", input=PROBE)
        b.ctr("content", "label", PROBE_DIGEST, "containerd.io/gc.root=probe")
        b.ctr("leases", "create", "--id", "other", namespace="elsewhere")
        content.signal(signal.SIGSTOP)
        try:
            start = time.monotonic()
            # The bytes only the (stopped) plugin has: a clear error, not a hang.
            got = b.ctr("content", "get", PROBE_DIGEST, check=False)
            took = time.monotonic() - start
            assert got.returncode != 0
            assert "unavailable" in got.stderr.lower(), got.stderr
            assert "proxy plugin content" in got.stderr, got.stderr
            print(f"hung plugin's call failed after {took:.2f}s")
            # Everything else answers; a --sync delete in another namespace
            # completes although the collection cannot clean the stopped plugin.
            assert b.ctr("version").returncode == 0
            assert "elsewhere" in b.ctr("namespaces", "ls", "-q").stdout
            assert b.ctr("leases", "rm", "--sync", "other", namespace="elsewhere").returncode == 0
        finally:
            content.signal(signal.SIGCONT)
        # Back: used again without a restart.
        wait_until(
            lambda: b.ctr("content", "get", PROBE_DIGEST, check=False).stdout == PROBE.decode(),
            timeout=30,
            what="content served again",
        )


@pytest.mark.root
@pytest.mark.overlay
def test_hung_supervised_plugin_is_killed_and_restarted(workdir: Path) -> None:
    need_root()
    d = workdir
    port = free_port()
    with Berthd(d, embedded_toml(d, f"127.0.0.1:{port}")) as b:
        old = b.child("berthd-content")
        os.kill(old, signal.SIGSTOP)
        try:
            wait_until(lambda: old not in b.children(), timeout=40, what="hung plugin killed")
        finally:
            # Never leave a stopped process behind, whatever happened.
            with contextlib.suppress(ProcessLookupError):
                os.kill(old, signal.SIGCONT)
        # Restarted, and answering again (an ingest opens once it is up).
        wait_until(lambda: write_code(b)[0] == grpc.StatusCode.OK, timeout=30, what="restarted")
        new = b.child("berthd-content")
        assert new != old
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/metrics", timeout=10) as r:
            page = r.read().decode()
        assert 'berthd_supervised_hung_kills_total{plugin="content"} 1.0' in page
