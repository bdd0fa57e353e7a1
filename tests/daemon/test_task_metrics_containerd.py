"""Task metrics from real statistics, checked against a real containerd's own page.

A private containerd (Debian's 1.6.20) runs a busybox container through the real
containerd-shim-runc-v2 and runc, with its ``[metrics]`` address set.  Its Tasks.Metrics
answer carries the shim's Stats Any unchanged, which is exactly what our collector will be
fed; containerd's /v1/metrics page, scraped at the same time, is the reference for the
family names and label names.
"""

from __future__ import annotations

import asyncio
import shutil
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2, message
from google.protobuf.unknown_fields import UnknownFieldSet
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from api.cgroups.v1 import metrics_pb2 as v1
from api.cgroups.v2 import metrics_pb2 as v2
from api.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from api.containerd.types.task import task_pb2
from api.errdefs import NotFound
from api.namespaces import outgoing
from daemon.tasks.cgroupfamilies import V1_URL, V2_URL, decode_stats
from daemon.tasks.metrics import TaskMetricsCollector, TaskRef, register
from tests.daemon.test_task_metrics import INHERITED_LINT, promtool_findings
from tests.support import free_port, short_tmpdir
from tests.support.containerd import Containerd, need_runc
from tests.support.oci import build_image_tar

pytestmark = [pytest.mark.containerd, pytest.mark.runc, pytest.mark.root, pytest.mark.slow]

IMAGE = "docker.io/library/berth-test:latest"
RUNTIME = "io.containerd.runc.v2"
UNIFIED = Path("/sys/fs/cgroup/cgroup.controllers").exists()
# Families whose value does not move while the container sleeps.
STEADY = ("container_pids_current", "container_pids_limit", "container_memory_usage_limit_bytes")

Families = dict[str, list[tuple[dict[str, str], float]]]


@dataclass
class Host:
    containerd: Containerd
    metrics_address: str


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    need_runc()
    port = free_port()
    with short_tmpdir("btm") as d:
        image = build_image_tar(d / "image.tar")
        metrics = f'[metrics]\n  address = "127.0.0.1:{port}"\n'
        with Containerd(d / "cd", extra_toml=metrics) as cd:
            for ns in ("default", "other"):  # images are per namespace
                cd.ctr("images", "import", str(image), namespace=ns)
            cd.ctr("run", "-d", IMAGE, "sleeper", "sleep", "100000")
            yield Host(cd, f"127.0.0.1:{port}")


def _families(page: str | bytes, prefix: str = "container_") -> Families:
    text = page.decode() if isinstance(page, bytes) else page
    return {
        f.name: [(dict(s.labels), s.value) for s in f.samples]
        for f in text_string_to_metric_families(text)
        if f.name.startswith(prefix)
    }


def _containerd_page(host: Host) -> str:
    url = f"http://{host.metrics_address}/v1/metrics"
    with urllib.request.urlopen(url, timeout=60) as r:
        return str(r.read().decode())


async def _stats(address: str, namespace: str, container_id: str) -> any_pb2.Any:
    """containerd's Tasks.Metrics for one task: the shim's Stats Any, passed through."""
    async with grpc.aio.insecure_channel(f"unix://{address}") as channel:
        tasks = tasks_pb2_grpc.TasksStub(channel)
        resp = await tasks.Metrics(
            tasks_pb2.MetricsRequest(filters=[f"id=={container_id}"]),
            metadata=outgoing(namespace),
            timeout=30,
        )
    if not resp.metrics:
        raise NotFound(f"no metrics for task {namespace}/{container_id}")
    (metric,) = resp.metrics
    assert metric.id == container_id
    return metric.data


def _unknown_fields(msg: message.Message, path: str = "") -> list[str]:
    """Where ``msg`` (nested messages included) holds fields its descriptor does not know."""
    out = [f"{path or '.'}#{f.field_number}" for f in UnknownFieldSet(msg)]
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        for i, sub in enumerate(value if field.is_repeated else [value]):
            out += _unknown_fields(sub, f"{path}.{field.name}[{i}]")
    return out


class ContainerdTasks:
    """A StatsSource over a real containerd's Tasks API, standing where berthd's Tasks
    service will: the running tasks of the given namespaces, and each one's Stats Any."""

    def __init__(self, address: str, namespaces: Sequence[str]) -> None:
        self.address = address
        self.namespaces = namespaces

    async def running_tasks(self) -> Sequence[TaskRef]:
        out = []
        async with grpc.aio.insecure_channel(f"unix://{self.address}") as channel:
            tasks = tasks_pb2_grpc.TasksStub(channel)
            for ns in self.namespaces:
                resp = await tasks.List(
                    tasks_pb2.ListTasksRequest(), metadata=outgoing(ns), timeout=30
                )
                out += [
                    TaskRef(ns, t.id, {"runtime": RUNTIME})
                    for t in resp.tasks
                    if t.status == task_pb2.RUNNING
                ]
        return out

    async def stats(self, task: TaskRef) -> any_pb2.Any:
        return await _stats(self.address, task.namespace, task.container_id)


async def test_real_shim_stats_decode_to_plausible_values(host: Host) -> None:
    packed = await _stats(host.containerd.address, "default", "sleeper")
    assert packed.type_url == (V2_URL if UNIFIED else V1_URL)
    stats = decode_stats(packed)
    # Every field the shim wrote is one our proto declares with the same number and type:
    # nothing is left over as unknown, and re-encoding gives the shim's bytes back.
    assert _unknown_fields(stats) == []
    assert stats.SerializeToString() == packed.value
    if isinstance(stats, v1.Metrics):
        assert stats.memory.usage.usage > 0
        assert stats.memory.usage.limit >= stats.memory.usage.usage
        assert stats.pids.current >= 1
        assert stats.cpu.usage.total > 0
        assert sum(stats.cpu.usage.per_cpu) == stats.cpu.usage.total
    else:
        assert isinstance(stats, v2.Metrics)
        assert stats.memory.usage > 0
        assert stats.pids.current >= 1
        assert stats.cpu.usage_usec > 0


def _shape(families: Families) -> dict[str, set[tuple[str, ...]]]:
    """Family -> the label-name sets of its samples."""
    return {name: {tuple(sorted(labels)) for labels, _ in s} for name, s in families.items()}


async def _stats_and_page(host: Host) -> tuple[any_pb2.Any, str]:
    """The sleeper's Stats Any and containerd's page, with the same families present.

    A family appears once its section has entries (e.g. blkio after the task's first
    uncached read), so the stats are taken between two scrapes that agree on the shape.
    """
    for _ in range(5):
        before = await asyncio.to_thread(_containerd_page, host)
        packed = await _stats(host.containerd.address, "default", "sleeper")
        after = await asyncio.to_thread(_containerd_page, host)
        if _shape(_families(before)) == _shape(_families(after)):
            return packed, after
    pytest.fail("containerd's container_* families kept changing between scrapes")


async def test_families_and_labels_match_containerds_page(host: Host) -> None:
    packed, page = await _stats_and_page(host)
    theirs = _families(page)
    collector = TaskMetricsCollector()
    # containerd labels the tasks it created with their runtime (services/tasks/local.go).
    collector.update("default", "sleeper", packed, labels={"runtime": RUNTIME})
    registry = CollectorRegistry()
    registry.register(collector)
    ours = _families(generate_latest(registry))

    # 58 families on a v1 host whose container uses no block device or huge pages.
    assert len(theirs) >= 10, f"containerd's page has few container_* families: {sorted(theirs)}"
    assert _shape(ours) == _shape(theirs), (
        f"only ours: {sorted(set(ours) - set(theirs))}, "
        f"only containerd's: {sorted(set(theirs) - set(ours))}"
    )
    for name in ours:
        assert {labels["container_id"] for labels, _ in ours[name]} == {"sleeper"}, name
        assert all(labels["runtime"] == RUNTIME for labels, _ in ours[name]), name
    for name in STEADY:
        assert ours[name] == theirs[name], name


@pytest.mark.promtool
async def test_promtool_finds_what_it_finds_in_containerds_page(host: Host) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("needs promtool (Debian package prometheus)")
    packed, page = await _stats_and_page(host)
    collector = TaskMetricsCollector()
    collector.update("default", "sleeper", packed, labels={"runtime": RUNTIME})
    registry = CollectorRegistry()
    registry.register(collector)
    ours = promtool_findings(generate_latest(registry))
    theirs = [line for line in promtool_findings(page.encode()) if line.startswith("container_")]
    assert sorted(ours) == sorted(theirs)
    assert all(line.partition(" ")[2] in INHERITED_LINT for line in ours)


async def test_a_scrape_follows_the_running_tasks(host: Host) -> None:
    cd = host.containerd
    cd.ctr("run", "-d", IMAGE, "short", "sleep", "100000", namespace="other")
    source = ContainerdTasks(cd.address, ["default", "other"])
    registry = CollectorRegistry()
    collector = register(registry, source)
    try:
        page = _families(await asyncio.to_thread(generate_latest, registry))
        running = {(s["namespace"], s["container_id"]) for s, _ in page["container_pids_current"]}
        assert running == {("default", "sleeper"), ("other", "short")}
        assert all(s["runtime"] == RUNTIME for s, _ in page["container_pids_current"])

        cd.ctr("tasks", "kill", "-s", "SIGKILL", "short", namespace="other")
        for _ in range(600):  # the task stays listed, STOPPED, until deleted
            if "STOPPED" in cd.ctr("tasks", "ls", namespace="other").stdout:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("task 'short' did not stop after SIGKILL")
        page = _families(await asyncio.to_thread(generate_latest, registry))
        running = {(s["namespace"], s["container_id"]) for s, _ in page["container_pids_current"]}
        assert running == {("default", "sleeper")}
        assert collector.tasks() == [("default", "sleeper")]
    finally:
        cd.ctr("tasks", "delete", "-f", "short", namespace="other", check=False)
        cd.ctr("containers", "delete", "short", namespace="other", check=False)
