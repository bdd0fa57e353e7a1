"""The SDK example (a statistics-recording wrapper) as a real plugin process.

Started through ``sdk.run`` like any user's snapshotter, driven over gRPC, and
used by real containerd as a proxy plugin; it also passes the whole
conformance suite (see test_conformance.py, target ``example-stats``).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.snapshotter.example_stats import StatsSnapshotter
from services.snapshotter.native import NativeSnapshotter
from tests.snapshotter.conformance import grpc_snapshotter
from tests.snapshotter.plugin import Plugin
from tests.support import free_port, short_tmpdir
from tests.support.containerd import Containerd, need_containerd
from tests.support.oci import build_image_tar

MODULE = "services.snapshotter.example_stats"


@pytest.fixture
def example() -> Iterator[Plugin]:
    with short_tmpdir("bex") as d:
        plugin = Plugin(
            d,
            metrics_address=f"127.0.0.1:{free_port()}",
            module=MODULE,
            extra=("--backend", "native", "--stats-file", str(d / "stats.json")),
        )
        with plugin:
            yield plugin


def _stats(plugin: Plugin) -> dict[str, dict[str, object]]:
    data: dict[str, dict[str, object]] = json.loads((plugin.workdir / "stats.json").read_text())
    return data


def _scrape(plugin: Plugin) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://{plugin.metrics_address}/v1/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_statistics_over_grpc(example: Plugin) -> None:
    async with grpc_snapshotter(example.address, "stats") as sn:
        await sn.prepare("a")
        await sn.mounts("a")
        await sn.mounts("a")
        await sn.commit("c", "a")
        await sn.prepare("b", "c")
        await sn.view("v", "c")
        await sn.usage("c")
        await sn.remove("v")

    stats = _stats(example)
    assert stats["c"] == {
        "created_by": "commit",
        "committed_from": "a",
        "mounts": 3,
        "children": 2,
        "usage_queries": 1,
    }
    assert stats["b"]["created_by"] == "prepare"
    assert "a" not in stats and "v" not in stats

    samples = await asyncio.to_thread(_scrape, example)
    ops = "berthd_example_snapshot_operations_total"
    assert samples[(ops, (("operation", "prepare"),))] == 2
    assert samples[(ops, (("operation", "mounts"),))] == 2
    assert samples[(ops, (("operation", "remove"),))] == 1
    # The SDK counts snapshots of a plain Snapshotter by walking it at scrape time.
    kinds = "berthd_snapshotter_snapshots"
    label = (("kind", "committed"), ("snapshotter", "example-stats"))
    assert samples[(kinds, label)] == 1
    assert samples[(kinds, (("kind", "active"), ("snapshotter", "example-stats")))] == 1
    assert samples[(kinds, (("kind", "view"), ("snapshotter", "example-stats")))] == 0


async def test_in_process(tmp_path: Path) -> None:
    sn = StatsSnapshotter(NativeSnapshotter(tmp_path / "root"))
    await sn.prepare("a")
    await sn.commit("c", "a")
    await sn.view("v", "c")
    await sn.mounts("v")
    report = sn.report()
    assert report["c"].children == 1
    assert report["v"].mounts == 2
    await sn.close()


@pytest.mark.containerd
@pytest.mark.root
def test_containerd_unpacks_through_example(example: Plugin) -> None:
    need_containerd()
    with short_tmpdir("bexc") as d:
        image = build_image_tar(d / "image.tar", layers=[{"etc/a": b"a\n"}])
        proxy = {"stats": {"type": "snapshot", "address": example.address}}
        with Containerd(d / "cd", proxy_plugins=proxy) as cd:
            cd.ctr("images", "import", "--snapshotter", "stats", str(image))
            chain = cd.ctr("snapshots", "--snapshotter", "stats", "ls").stdout.split()
    stats = _stats(example)
    committed = {k: v for k, v in stats.items() if v["created_by"] == "commit"}
    assert len(committed) == 2
    # containerd names backend snapshots "<namespace>/<n>/<chain id>".
    assert {k.rsplit("/", 1)[1] for k in committed} <= set(chain)
    assert all(str(v["committed_from"]).startswith("default/") for v in committed.values())
    # The top layer was built on the bottom one.
    assert sorted(int(str(v["children"])) for v in committed.values()) == [0, 1]
