"""``berthd-snapshotter`` as a process (flags, health, metrics, SIGTERM, several
backends by name); servicer resolvers."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api import errdefs
from api.containerd.services.snapshots.v1 import snapshots_pb2_grpc
from api.grpc.health.v1 import health_pb2, health_pb2_grpc
from services.harness.server import PluginServer, ServerConfig
from services.snapshotter import main
from services.snapshotter.native import NativeSnapshotter
from services.snapshotter.proxy import ProxySnapshotter
from services.snapshotter.servicer import SERVICE_NAME, SnapshotsServicer
from services.snapshotter.snapshotter import Snapshotter
from tests.snapshotter.conformance import grpc_snapshotter
from tests.snapshotter.plugin import Plugin
from tests.support import PYTHON, free_port, short_tmpdir


def _scrape(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/v1/metrics", timeout=5) as r:
        return str(r.read().decode())


@pytest.mark.parametrize("backend", ["overlayfs", "native"])
async def test_serves_health_and_metrics(backend: str) -> None:
    with short_tmpdir("bsp") as d:
        metrics = f"127.0.0.1:{free_port()}"
        with Plugin(d, backend, metrics_address=metrics) as plugin:
            async with grpc.aio.insecure_channel("unix://" + plugin.address) as ch:
                health = health_pb2_grpc.HealthStub(ch)
                resp = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
                assert resp.status == health_pb2.HealthCheckResponse.SERVING
                sn = ProxySnapshotter(ch, "berth")
                await sn.prepare("a")
                await sn.commit("c", "a")
                await sn.prepare("b", "c")
                await sn.view("v", "c")
                await sn.usage("c")
                with pytest.raises(errdefs.NotFound):
                    await sn.stat("missing")
            text = await asyncio.to_thread(_scrape, metrics)
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        }
        for kind in ("active", "view", "committed"):
            assert (
                samples[
                    ("berthd_snapshotter_snapshots", (("kind", kind), ("snapshotter", backend)))
                ]
                == 1
            )
        assert (
            samples[
                ("berthd_snapshotter_commit_duration_seconds_count", (("snapshotter", backend),))
            ]
            == 1
        )
        assert (
            samples[
                ("berthd_snapshotter_usage_duration_seconds_count", (("snapshotter", backend),))
            ]
            == 1
        )
        handled = (
            "grpc_server_handled_total",
            (
                ("grpc_code", "NotFound"),
                ("grpc_method", "Stat"),
                ("grpc_service", SERVICE_NAME),
                ("grpc_type", "unary"),
            ),
        )
        assert samples[handled] == 1
        if shutil.which("promtool"):
            check = await asyncio.to_thread(
                subprocess.run,
                ["promtool", "check", "metrics"],
                input=text,
                capture_output=True,
                text=True,
            )
            assert check.returncode == 0, check.stdout + check.stderr


def test_sigterm_stops_cleanly_and_state_survives() -> None:
    with short_tmpdir("bsp") as d:
        plugin = Plugin(d, "native").start()

        async def work() -> None:
            async with grpc_snapshotter(plugin.address, "berth") as sn:
                await sn.prepare("a", "", {"k": "v"})
                await sn.commit("c", "a")

        asyncio.run(work())
        assert plugin.proc is not None
        plugin.proc.signal(signal.SIGTERM)
        assert plugin.proc.wait() == 0
        plugin.proc = None
        assert not os.path.exists(plugin.address)

        plugin.start()

        async def check() -> None:
            async with grpc_snapshotter(plugin.address, "berth") as sn:
                info = await sn.stat("c")
                assert info.kind.name == "COMMITTED"

        asyncio.run(check())
        plugin.stop()


def test_cli_errors_are_one_line() -> None:
    with short_tmpdir("bsp") as d:
        blocker = d / "file"
        blocker.write_text("")
        r = subprocess.run(
            [
                PYTHON,
                "-m",
                "services.snapshotter.main",
                "--root",
                str(blocker / "root"),
                "--address",
                str(d / "s.sock"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 1
        assert r.stderr.startswith("berthd-snapshotter: error:"), r.stderr
        assert "Traceback" not in r.stderr
        r = subprocess.run(
            [PYTHON, "-m", "services.snapshotter.main", "--backend", "zfs"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 2 and "invalid choice" in r.stderr


def test_console_script_declared() -> None:
    script = Path(PYTHON).parent / "berthd-snapshotter"
    if not script.exists():
        pytest.skip("package not installed in this environment")
    r = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    for flag in ("--root", "--address", "--backend", "--metrics-address"):
        assert flag in r.stdout
    defaults = main.parser().parse_args([])
    assert defaults.address == "/run/berthd/snapshotter.sock"
    assert defaults.root == "/var/lib/berthd/snapshotter"
    assert main.backend_roots(defaults.backend, defaults.root) == {
        "overlayfs": Path("/var/lib/berthd/snapshotter")
    }


def test_backend_roots(tmp_path: Path) -> None:
    # One backend: --root is its root, as before several could be served.
    assert main.backend_roots(["native"], tmp_path) == {"native": tmp_path}
    # Several: containerd's <root>/<plugin type>.<name> for each.
    assert main.backend_roots(["overlayfs", "native"], tmp_path) == {
        "overlayfs": tmp_path / "io.containerd.snapshotter.v1.overlayfs",
        "native": tmp_path / "io.containerd.snapshotter.v1.native",
    }
    with pytest.raises(errdefs.InvalidArgument, match="--backend native given more than once"):
        main.backend_roots(["native", "overlayfs", "native"], tmp_path)


def test_several_backends_refuse_a_single_backends_root() -> None:
    """Data of a single-backend process would silently be left behind: refuse, in one line."""
    with short_tmpdir("bsp") as d:
        with Plugin(d, "native") as plugin:

            async def work() -> None:
                async with grpc_snapshotter(plugin.address, "native") as sn:
                    await sn.prepare("kept")

            asyncio.run(work())
        argv = [PYTHON, "-m", "services.snapshotter.main", "--root", str(plugin.root)]
        argv += ["--address", plugin.address, "--backend", "overlayfs", "--backend", "native"]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, r.stderr
        assert r.stderr.startswith("berthd-snapshotter: error: --root "), r.stderr
        assert "holds the snapshots of a single backend" in r.stderr
        assert "Traceback" not in r.stderr
        assert not (plugin.root / "io.containerd.snapshotter.v1.native").exists()


async def test_one_process_serves_both_backends_by_name() -> None:
    with short_tmpdir("bsp") as d:
        metrics = f"127.0.0.1:{free_port()}"
        with Plugin(d, ("overlayfs", "native"), metrics_address=metrics) as plugin:
            async with grpc.aio.insecure_channel("unix://" + plugin.address) as ch:
                overlay = ProxySnapshotter(ch, "overlayfs")
                native = ProxySnapshotter(ch, "native")
                await overlay.prepare("a")
                await overlay.commit("c", "a")
                [child] = await overlay.prepare("b", "c")
                [copy] = await native.prepare("n")
                assert sorted([i.name async for i in overlay.walk()]) == ["b", "c"]
                assert [i.name async for i in native.walk()] == ["n"]
                with pytest.raises(errdefs.NotFound):
                    await native.stat("c")
                # As containerd's Snapshots service: no name, or a name not served.
                with pytest.raises(errdefs.InvalidArgument, match="snapshotter not loaded: berth"):
                    await ProxySnapshotter(ch, "berth").stat("c")
                with pytest.raises(errdefs.InvalidArgument, match="snapshotter argument missing"):
                    await ProxySnapshotter(ch, "").stat("c")
            text = await asyncio.to_thread(_scrape, metrics)
        overlay_root = plugin.root / "io.containerd.snapshotter.v1.overlayfs"
        native_root = plugin.root / "io.containerd.snapshotter.v1.native"
        assert (overlay_root / "metadata.sqlite").is_file()
        assert (native_root / "metadata.sqlite").is_file()
        assert not (plugin.root / "metadata.sqlite").exists()
        assert child.type == "overlay" and str(overlay_root) in ",".join(child.options)
        assert copy.type == "bind" and copy.source.startswith(str(native_root / "snapshots"))

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }

    def snapshots(snapshotter: str, kind: str) -> float:
        key = (("kind", kind), ("snapshotter", snapshotter))
        return samples[("berthd_snapshotter_snapshots", key)]

    assert [snapshots("overlayfs", k) for k in ("active", "view", "committed")] == [1, 0, 1]
    assert [snapshots("native", k) for k in ("active", "view", "committed")] == [1, 0, 0]
    commits = "berthd_snapshotter_commit_duration_seconds_count"
    assert samples[(commits, (("snapshotter", "overlayfs"),))] == 1
    assert samples[(commits, (("snapshotter", "native"),))] == 0
    if shutil.which("promtool"):
        check = await asyncio.to_thread(
            subprocess.run,
            ["promtool", "check", "metrics"],
            input=text,
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, check.stdout + check.stderr


@pytest.fixture
async def by_name(tmp_path: Path) -> AsyncIterator[tuple[str, list[tuple[str, str | None]]]]:
    """A server with two snapshotters selected by name; records what the resolver saw."""
    seen: list[tuple[str, str | None]] = []
    backends: dict[str, Snapshotter] = {
        "one": NativeSnapshotter(tmp_path / "one"),
        "two": NativeSnapshotter(tmp_path / "two"),
    }
    strict = SnapshotsServicer.by_name(backends)

    def resolve(name: str, namespace: str | None) -> Snapshotter:
        seen.append((name, namespace))
        return strict._resolve(name, namespace)

    servicer = SnapshotsServicer(resolve)
    with short_tmpdir("bsp") as d:
        sock = str(d / "s.sock")
        server = PluginServer("t", ServerConfig(address=sock))
        server.add_service(
            SERVICE_NAME, lambda s: snapshots_pb2_grpc.add_SnapshotsServicer_to_server(servicer, s)
        )
        await server.start()
        try:
            yield sock, seen
        finally:
            await server.stop(0)


async def test_by_name_resolver(by_name: tuple[str, list[tuple[str, str | None]]]) -> None:
    sock, seen = by_name
    async with grpc.aio.insecure_channel("unix://" + sock) as ch:
        one = ProxySnapshotter(ch, "one", namespace="ns1")
        two = ProxySnapshotter(ch, "two")
        await one.prepare("a")
        with pytest.raises(errdefs.NotFound):
            await two.stat("a")
        with pytest.raises(errdefs.InvalidArgument, match="snapshotter argument missing"):
            await ProxySnapshotter(ch, "").stat("a")
        with pytest.raises(errdefs.InvalidArgument, match="snapshotter not loaded: three"):
            await ProxySnapshotter(ch, "three").stat("a")
        # Bad input is refused at the edge, before any snapshotter is involved.
        with pytest.raises(errdefs.InvalidArgument, match="key must not be empty"):
            await one.prepare("")
    assert seen[:2] == [("one", "ns1"), ("two", None)]
