"""One scrape target for the set: the daemon's families and its plugins', labelled by plugin."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import Proc, free_port, need_binary, need_root, short_tmpdir
from tests.support.berthd import (
    Berthd,
    embedded_toml,
    need_plugin,
    plugin_proc,
    wait_until,
    write_code,
)

pytestmark = [pytest.mark.containerd, pytest.mark.root, pytest.mark.overlay]


def scrape(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/v1/metrics", timeout=15) as r:
        assert r.status == 200
        return str(r.read().decode())


def samples(page: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(page):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


@pytest.fixture(scope="module")
def daemon() -> Iterator[tuple[Berthd, str]]:
    need_root()
    need_binary("ctr")
    need_plugin("services.content.main")
    need_plugin("services.snapshotter.main")
    address = f"127.0.0.1:{free_port()}"
    with short_tmpdir("bm") as d, Berthd(d, embedded_toml(d, address)) as b:
        b.wait_startup_gc()  # content written below is held by no lease
        b.ctr("content", "ingest", "m", input=b"metrics\n")
        b.ctr("content", "ls")
        b.ctr("snapshots", "ls")
        b.ctr("snapshots", "--snapshotter", "native", "ls")
        yield b, address


def test_daemon_and_plugin_families_on_one_page(daemon: tuple[Berthd, str]) -> None:
    _, address = daemon
    s = samples(scrape(address))
    plugins = {"content", "overlayfs"}
    build = s["berthd_build_info"]
    assert build[0][0]["version"].startswith("v") and build[0][1] == 1
    up = {labels["plugin"]: value for labels, value in s["berthd_proxy_plugin_up"]}
    assert all(up[p] == 1 for p in plugins), up
    scraped = {labels["plugin"]: value for labels, value in s["berthd_plugin_scrape_up"]}
    assert all(scraped[p] == 1 for p in plugins), scraped
    calls = {
        (labels["plugin"], labels["method"], labels["grpc_code"]): value
        for labels, value in s["berthd_proxy_calls_total"]
    }
    assert calls[("content", "List", "OK")] >= 1
    # ctr leaves once Write's last answer arrives, so its end may count as Canceled
    assert sum(v for (p, m, _), v in calls.items() if (p, m) == ("content", "Write")) >= 1
    assert calls[("overlayfs", "List", "OK")] >= 1
    # native shares the overlayfs entry's process: its own connection, and its
    # snapshot counts on that process's page, labelled by snapshotter.
    assert up["native"] == 1 and calls[("native", "List", "OK")] >= 1
    assert "native" not in scraped
    counted = {
        (labels["plugin"], labels["snapshotter"]) for labels, _ in s["berthd_snapshotter_snapshots"]
    }
    assert counted == {("overlayfs", "overlayfs"), ("overlayfs", "native")}
    latency = {labels["plugin"] for labels, _ in s["berthd_proxy_call_duration_seconds_count"]}
    assert plugins <= latency
    # gRPC server families: the daemon's own (no plugin label) and each plugin's
    handled = s["grpc_server_handled_total"]
    assert any("plugin" not in labels and labels["grpc_method"] == "List" for labels, _ in handled)
    assert {labels.get("plugin") for labels, _ in handled} >= plugins
    # the plugins' own families, re-exposed with their plugin label
    assert any(labels["plugin"] == "content" for labels, _ in s["berthd_content_blobs"])
    assert any(labels.get("plugin") == "content" for labels, _ in s["process_cpu_seconds_total"])
    assert any("plugin" not in labels for labels, _ in s["process_cpu_seconds_total"])


def test_plugins_report_the_metrics_port_they_bound(daemon: tuple[Berthd, str]) -> None:
    # "auto": each plugin binds any free port itself and reports it when ready;
    # the daemon exports it and scrapes it there.
    b, _ = daemon
    detail = b.ctr("plugins", "ls", "-d").stdout
    addresses = re.findall(r"metrics_address\s+(127\.0\.0\.1:\d+)", detail)
    assert len(addresses) >= 3, detail  # content, overlayfs, walking
    for address in addresses:
        assert not address.endswith(":0")
        assert "berthd_" in scrape(address)


def test_promtool_accepts_the_page(daemon: tuple[Berthd, str]) -> None:
    need_binary("promtool")
    page = scrape(daemon[1])
    out = subprocess.run(
        ["promtool", "check", "metrics"], input=page, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.prometheus
@pytest.mark.slow
def test_real_prometheus_scrapes_the_daemon(daemon: tuple[Berthd, str]) -> None:
    need_binary("prometheus")
    _, address = daemon
    with short_tmpdir("bp") as d:
        web = f"127.0.0.1:{free_port()}"
        config = d / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: berthd\n    metrics_path: /v1/metrics\n"
            f"    static_configs:\n      - targets: ['{address}']\n"
        )
        prom = Proc(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={d / 'data'}",
                f"--web.listen-address={web}",
            ],
            d / "prometheus.log",
        )
        try:

            def api(path: str, **params: str) -> object:
                url = f"http://{web}/api/v1/{path}"
                if params:
                    url += "?" + urllib.parse.urlencode(params)
                try:
                    with urllib.request.urlopen(url, timeout=5) as r:
                        return json.loads(r.read())["data"]
                except OSError:
                    return None

            def target_up() -> bool:
                data = api("targets")
                if not isinstance(data, dict):
                    return False
                return any(
                    t["labels"].get("job") == "berthd" and t["health"] == "up"
                    for t in data["activeTargets"]
                )

            wait_until(target_up, timeout=60, what=f"prometheus target up\n{prom.output()}")

            def query(q: str) -> list[dict[str, object]]:
                data = api("query", query=q)
                return list(data["result"]) if isinstance(data, dict) else []

            def has(q: str) -> bool:
                return bool(query(q))

            wait_until(lambda: has("berthd_proxy_plugin_up == 1"), timeout=30, what="up gauge")
            by_plugin = query('count by (plugin) (grpc_server_handled_total{plugin!=""})')
            assert {r["metric"]["plugin"] for r in by_plugin} >= {"content", "overlayfs"}  # type: ignore[index]
            assert has('berthd_content_blobs{plugin="content"}')
            assert has('berthd_proxy_calls_total{plugin="content"}')
        finally:
            prom.stop()
            time.sleep(0)


def test_down_plugin_shows_in_the_metrics() -> None:
    need_binary("ctr")
    need_plugin("services.content.main")
    with short_tmpdir("bn") as d:
        metrics = f"127.0.0.1:{free_port()}"
        plugin_metrics = f"127.0.0.1:{free_port()}"
        cfg = (
            f'version = 2\n[metrics]\naddress = "{metrics}"\n'
            f'[proxy_plugins.content]\ntype = "content"\naddress = "{d}/p/c.sock"\n'
            f'metrics_address = "{plugin_metrics}"\n'
        )
        args = (
            "--root",
            str(d / "c"),
            "--address",
            f"{d}/p/c.sock",
            "--metrics-address",
            plugin_metrics,
        )
        with Berthd(Path(d), cfg) as b:
            with plugin_proc("content", Path(d), *args):
                # The monitor dials the plugin on its own; no call needs to.
                wait_until(
                    lambda: samples(scrape(metrics))["berthd_proxy_plugin_up"][0][1] == 1,
                    what="up gauge at 1",
                )
                s = samples(scrape(metrics))
                assert s["berthd_plugin_scrape_up"] == [({"plugin": "content"}, 1.0)]
            wait_until(
                lambda: samples(scrape(metrics))["berthd_proxy_plugin_up"][0][1] == 0,
                what="up gauge at 0",
            )
            s = samples(scrape(metrics))
            assert s["berthd_plugin_scrape_up"] == [({"plugin": "content"}, 0.0)]
            # Opening an ingest fails while it is down (a listing is metadata only).
            assert write_code(b)[0] == grpc.StatusCode.UNAVAILABLE
            page = scrape(metrics)
            assert 'grpc_code="Unavailable"' in page
