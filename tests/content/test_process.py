"""berthd-content as a real process: entry point, metrics, health, signals."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.grpc.health.v1 import health_pb2, health_pb2_grpc
from services.content.proxy import ProxyContentStore
from services.content.servicer import SERVICE_NAME
from services.harness.server import CHANNEL_OPTIONS
from tests.content.plugin import running_plugin
from tests.support import REPO, free_port, short_tmpdir


def scrape(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/v1/metrics", timeout=5) as r:
        return str(r.read().decode())


def samples(page: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(page):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_and_health() -> None:
    with short_tmpdir("bcm") as d, running_plugin(d, f"127.0.0.1:{free_port()}") as plugin:
        assert plugin.metrics_address is not None
        async with grpc.aio.insecure_channel(
            f"unix://{plugin.address}", options=CHANNEL_OPTIONS
        ) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            resp = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
            assert resp.status == health_pb2.HealthCheckResponse.SERVING

            store = ProxyContentStore(ch)
            data = os.urandom(300_000)
            w = await store.writer("metrics", total=len(data))
            await w.write(data)
            page = await asyncio.to_thread(scrape, plugin.metrics_address)
            assert samples(page)[("berthd_content_active_ingests", ())] == 1
            dgst = await w.commit(len(data))
            async with await store.reader(dgst) as r:
                assert len(await r.read_at(0, len(data))) == len(data)

        page = await asyncio.to_thread(scrape, plugin.metrics_address)
        got = samples(page)
        assert got[("berthd_content_written_bytes_total", ())] == len(data)
        assert got[("berthd_content_read_bytes_total", ())] == len(data)
        assert got[("berthd_content_active_ingests", ())] == 0
        assert got[("berthd_content_blobs", ())] == 1
        assert got[("berthd_content_blob_bytes", ())] == len(data)
        assert got[("berthd_content_ingests", ())] == 0
        write_ok = (
            "grpc_server_handled_total",
            (
                ("grpc_code", "OK"),
                ("grpc_method", "Write"),
                ("grpc_service", SERVICE_NAME),
                ("grpc_type", "bidi_stream"),
            ),
        )
        assert got[write_ok] == 1

        if shutil.which("promtool") is not None:
            check = await asyncio.to_thread(
                subprocess.run,
                ["promtool", "check", "metrics"],
                input=page.encode(),
                capture_output=True,
            )
            assert check.returncode == 0, check.stdout + check.stderr


def test_sigterm_stops_and_removes_socket() -> None:
    with short_tmpdir("bcs") as d, running_plugin(d) as plugin:
        assert plugin.proc is not None
        plugin.proc.signal(signal.SIGTERM)
        assert plugin.proc.wait() == 0
        assert not Path(plugin.address).exists()
        assert (plugin.root / "blobs").is_dir()
        assert (plugin.root / "ingest").is_dir()


def test_console_script_help() -> None:
    script = REPO / ".venv" / "bin" / "berthd-content"
    if not script.exists():
        pytest.skip("console script not installed (pip install -e .)")
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    assert "--root" in out.stdout
    assert "/run/berthd/content.sock" in out.stdout
    assert "/var/lib/berthd/content" in out.stdout


def test_bad_root_is_one_line_error() -> None:
    with short_tmpdir("bcr") as d:
        blocker = d / "file"
        blocker.write_text("not a directory")
        proc = subprocess.run(
            [
                str(REPO / ".venv" / "bin" / "python"),
                "-m",
                "services.content.main",
                "--root",
                str(blocker / "root"),
                "--address",
                str(d / "c.sock"),
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=30,
        )
        assert proc.returncode == 1
        assert proc.stderr.startswith("berthd-content: error:")
        assert "Traceback" not in proc.stderr
