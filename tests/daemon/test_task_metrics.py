"""containerd's container_* families from cgroup statistics: names, labels, sources, values.

The expected tables are transcribed from containerd v1.6.20 metrics/cgroups/v1 and v2
(pids.go, cpu.go, memory.go, hugetlb.go, blkio.go, io.go; unchanged in v2.3.4
core/metrics/cgroups): each family's full name (go-metrics joins namespace "container",
the name and the unit), its labels beyond container_id and namespace, and for the
unlabelled ones the statistics field containerd reads.  They are written out here rather
than derived from daemon/tasks so that a slip in either shows.  The end-to-end comparison
with a real containerd's page is in test_task_metrics_containerd.py.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

import pytest
from google.protobuf import any_pb2, message
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from api.cgroups.v1 import metrics_pb2 as v1
from api.cgroups.v2 import metrics_pb2 as v2
from api.errdefs import InvalidArgument, NotFound
from daemon.tasks.cgroupfamilies import V1_URL, V2_URL, decode_stats, families_for, render
from daemon.tasks.metrics import TaskMetricsCollector, TaskRef, register

BLKIO = ("op", "device", "major", "minor")

# fmt: off
# Family -> labels beyond container_id and namespace, in containerd's order.
CONTAINERD_V1: dict[str, tuple[str, ...]] = {
    "container_pids_limit": (),
    "container_pids_current": (),
    "container_cpu_total_nanoseconds": (),
    "container_cpu_kernel_nanoseconds": (),
    "container_cpu_user_nanoseconds": (),
    "container_per_cpu_nanoseconds": ("cpu",),
    "container_cpu_throttle_periods_total": (),
    "container_cpu_throttled_periods_total": (),
    "container_cpu_throttled_time_nanoseconds": (),
    **{name: () for name in (
        "container_memory_cache_bytes", "container_memory_rss_bytes",
        "container_memory_rss_huge_bytes", "container_memory_mapped_file_bytes",
        "container_memory_dirty_bytes", "container_memory_writeback_bytes",
        "container_memory_pgpgin_bytes", "container_memory_pgpgout_bytes",
        "container_memory_pgfault_bytes", "container_memory_pgmajfault_bytes",
        "container_memory_inactive_anon_bytes", "container_memory_active_anon_bytes",
        "container_memory_inactive_file_bytes", "container_memory_active_file_bytes",
        "container_memory_unevictable_bytes", "container_memory_hierarchical_memory_limit_bytes",
        "container_memory_hierarchical_memsw_limit_bytes", "container_memory_total_cache_bytes",
        "container_memory_total_rss_bytes", "container_memory_total_rss_huge_bytes",
        "container_memory_total_mapped_file_bytes", "container_memory_total_dirty_bytes",
        "container_memory_total_writeback_bytes", "container_memory_total_pgpgin_bytes",
        "container_memory_total_pgpgout_bytes", "container_memory_total_pgfault_bytes",
        "container_memory_total_pgmajfault_bytes", "container_memory_total_inactive_anon_bytes",
        "container_memory_total_active_anon_bytes", "container_memory_total_inactive_file_bytes",
        "container_memory_total_active_file_bytes", "container_memory_total_unevictable_bytes",
        "container_memory_usage_failcnt_total", "container_memory_usage_limit_bytes",
        "container_memory_usage_max_bytes", "container_memory_usage_usage_bytes",
        "container_memory_swap_failcnt_total", "container_memory_swap_limit_bytes",
        "container_memory_swap_max_bytes", "container_memory_swap_usage_bytes",
        "container_memory_kernel_failcnt_total", "container_memory_kernel_limit_bytes",
        "container_memory_kernel_max_bytes", "container_memory_kernel_usage_bytes",
        "container_memory_kerneltcp_failcnt_total", "container_memory_kerneltcp_limit_bytes",
        "container_memory_kerneltcp_max_bytes", "container_memory_kerneltcp_usage_bytes",
    )},
    "container_hugetlb_usage_bytes": ("page",),
    "container_hugetlb_failcnt_total": ("page",),
    "container_hugetlb_max_bytes": ("page",),
    "container_blkio_io_merged_recursive_total": BLKIO,
    "container_blkio_io_queued_recursive_total": BLKIO,
    "container_blkio_io_service_bytes_recursive_bytes": BLKIO,
    "container_blkio_io_service_time_recursive_total": BLKIO,
    "container_blkio_io_serviced_recursive_total": BLKIO,
    "container_blkio_io_time_recursive_total": BLKIO,
    "container_blkio_sectors_recursive_total": BLKIO,
}

CONTAINERD_V2: dict[str, tuple[str, ...]] = {
    "container_pids_limit": (),
    "container_pids_current": (),
    "container_cpu_usage_usec_microseconds": (),
    "container_cpu_user_usec_microseconds": (),
    "container_cpu_system_usec_microseconds": (),
    "container_cpu_nr_periods_total": (),
    "container_cpu_nr_throttled_total": (),
    "container_cpu_throttled_usec_microseconds": (),
    **{f"container_memory_{name}_bytes": () for name in (
        "usage", "usage_limit", "swap_usage", "swap_limit", "file_mapped", "file_dirty",
        "file_writeback", "pgactivate", "pgdeactivate", "pgfault", "pgmajfault", "pglazyfree",
        "pgrefill", "pglazyfreed", "pgscan", "pgsteal", "inactive_anon", "active_anon",
        "inactive_file", "active_file", "unevictable", "anon", "file", "kernel_stack", "slab",
        "sock", "shmem", "anon_thp", "slab_reclaimable", "slab_unreclaimable",
        "workingset_refault", "workingset_activate", "workingset_nodereclaim",
        "thp_fault_alloc", "thp_collapse_alloc",
    )},
    "container_memory_oom_total": (),
    "container_io_rbytes_bytes": ("major", "minor"),
    "container_io_wbytes_bytes": ("major", "minor"),
    "container_io_rios_total": ("major", "minor"),
    "container_io_wios_total": ("major", "minor"),
}

# Unlabelled family -> the statistics field containerd reads (getValues' stats.X.Y).
V1_SOURCES: dict[str, str] = {
    "container_pids_limit": "pids.limit",
    "container_pids_current": "pids.current",
    "container_cpu_total_nanoseconds": "cpu.usage.total",
    "container_cpu_kernel_nanoseconds": "cpu.usage.kernel",
    "container_cpu_user_nanoseconds": "cpu.usage.user",
    "container_cpu_throttle_periods_total": "cpu.throttling.periods",
    "container_cpu_throttled_periods_total": "cpu.throttling.throttled_periods",
    "container_cpu_throttled_time_nanoseconds": "cpu.throttling.throttled_time",
    "container_memory_cache_bytes": "memory.cache",
    "container_memory_rss_bytes": "memory.rss",
    "container_memory_rss_huge_bytes": "memory.rss_huge",
    "container_memory_mapped_file_bytes": "memory.mapped_file",
    "container_memory_dirty_bytes": "memory.dirty",
    "container_memory_writeback_bytes": "memory.writeback",
    "container_memory_pgpgin_bytes": "memory.pg_pg_in",
    "container_memory_pgpgout_bytes": "memory.pg_pg_out",
    "container_memory_pgfault_bytes": "memory.pg_fault",
    "container_memory_pgmajfault_bytes": "memory.pg_maj_fault",
    "container_memory_inactive_anon_bytes": "memory.inactive_anon",
    "container_memory_active_anon_bytes": "memory.active_anon",
    "container_memory_inactive_file_bytes": "memory.inactive_file",
    "container_memory_active_file_bytes": "memory.active_file",
    "container_memory_unevictable_bytes": "memory.unevictable",
    "container_memory_hierarchical_memory_limit_bytes": "memory.hierarchical_memory_limit",
    "container_memory_hierarchical_memsw_limit_bytes": "memory.hierarchical_swap_limit",
    "container_memory_total_cache_bytes": "memory.total_cache",
    "container_memory_total_rss_bytes": "memory.total_rss",
    "container_memory_total_rss_huge_bytes": "memory.total_rss_huge",
    "container_memory_total_mapped_file_bytes": "memory.total_mapped_file",
    "container_memory_total_dirty_bytes": "memory.total_dirty",
    "container_memory_total_writeback_bytes": "memory.total_writeback",
    "container_memory_total_pgpgin_bytes": "memory.total_pg_pg_in",
    "container_memory_total_pgpgout_bytes": "memory.total_pg_pg_out",
    "container_memory_total_pgfault_bytes": "memory.total_pg_fault",
    "container_memory_total_pgmajfault_bytes": "memory.total_pg_maj_fault",
    "container_memory_total_inactive_anon_bytes": "memory.total_inactive_anon",
    "container_memory_total_active_anon_bytes": "memory.total_active_anon",
    "container_memory_total_inactive_file_bytes": "memory.total_inactive_file",
    "container_memory_total_active_file_bytes": "memory.total_active_file",
    "container_memory_total_unevictable_bytes": "memory.total_unevictable",
    "container_memory_usage_failcnt_total": "memory.usage.failcnt",
    "container_memory_usage_limit_bytes": "memory.usage.limit",
    "container_memory_usage_max_bytes": "memory.usage.max",
    "container_memory_usage_usage_bytes": "memory.usage.usage",
    "container_memory_swap_failcnt_total": "memory.swap.failcnt",
    "container_memory_swap_limit_bytes": "memory.swap.limit",
    "container_memory_swap_max_bytes": "memory.swap.max",
    "container_memory_swap_usage_bytes": "memory.swap.usage",
    "container_memory_kernel_failcnt_total": "memory.kernel.failcnt",
    "container_memory_kernel_limit_bytes": "memory.kernel.limit",
    "container_memory_kernel_max_bytes": "memory.kernel.max",
    "container_memory_kernel_usage_bytes": "memory.kernel.usage",
    "container_memory_kerneltcp_failcnt_total": "memory.kernel_tcp.failcnt",
    "container_memory_kerneltcp_limit_bytes": "memory.kernel_tcp.limit",
    "container_memory_kerneltcp_max_bytes": "memory.kernel_tcp.max",
    "container_memory_kerneltcp_usage_bytes": "memory.kernel_tcp.usage",
}

V2_SOURCES: dict[str, str] = {
    "container_pids_limit": "pids.limit",
    "container_pids_current": "pids.current",
    "container_cpu_usage_usec_microseconds": "cpu.usage_usec",
    "container_cpu_user_usec_microseconds": "cpu.user_usec",
    "container_cpu_system_usec_microseconds": "cpu.system_usec",
    "container_cpu_nr_periods_total": "cpu.nr_periods",
    "container_cpu_nr_throttled_total": "cpu.nr_throttled",
    "container_cpu_throttled_usec_microseconds": "cpu.throttled_usec",
    "container_memory_usage_bytes": "memory.usage",
    "container_memory_usage_limit_bytes": "memory.usage_limit",
    "container_memory_swap_usage_bytes": "memory.swap_usage",
    "container_memory_swap_limit_bytes": "memory.swap_limit",
    "container_memory_file_mapped_bytes": "memory.file_mapped",
    "container_memory_file_dirty_bytes": "memory.file_dirty",
    "container_memory_file_writeback_bytes": "memory.file_writeback",
    "container_memory_pgactivate_bytes": "memory.pgactivate",
    "container_memory_pgdeactivate_bytes": "memory.pgdeactivate",
    "container_memory_pgfault_bytes": "memory.pgfault",
    "container_memory_pgmajfault_bytes": "memory.pgmajfault",
    "container_memory_pglazyfree_bytes": "memory.pglazyfree",
    "container_memory_pgrefill_bytes": "memory.pgrefill",
    "container_memory_pglazyfreed_bytes": "memory.pglazyfreed",
    "container_memory_pgscan_bytes": "memory.pgscan",
    "container_memory_pgsteal_bytes": "memory.pgsteal",
    "container_memory_inactive_anon_bytes": "memory.inactive_anon",
    "container_memory_active_anon_bytes": "memory.active_anon",
    "container_memory_inactive_file_bytes": "memory.inactive_file",
    "container_memory_active_file_bytes": "memory.active_file",
    "container_memory_unevictable_bytes": "memory.unevictable",
    "container_memory_anon_bytes": "memory.anon",
    "container_memory_file_bytes": "memory.file",
    "container_memory_kernel_stack_bytes": "memory.kernel_stack",
    "container_memory_slab_bytes": "memory.slab",
    "container_memory_sock_bytes": "memory.sock",
    "container_memory_shmem_bytes": "memory.shmem",
    "container_memory_anon_thp_bytes": "memory.anon_thp",
    "container_memory_slab_reclaimable_bytes": "memory.slab_reclaimable",
    "container_memory_slab_unreclaimable_bytes": "memory.slab_unreclaimable",
    "container_memory_workingset_refault_bytes": "memory.workingset_refault",
    "container_memory_workingset_activate_bytes": "memory.workingset_activate",
    "container_memory_workingset_nodereclaim_bytes": "memory.workingset_nodereclaim",
    "container_memory_thp_fault_alloc_bytes": "memory.thp_fault_alloc",
    "container_memory_thp_collapse_alloc_bytes": "memory.thp_collapse_alloc",
    "container_memory_oom_total": "memory_events.oom",
}
# fmt: on

STATS_CLASSES = {"v1": v1.Metrics, "v2": v2.Metrics}
EXPECTED = {"v1": (CONTAINERD_V1, V1_SOURCES), "v2": (CONTAINERD_V2, V2_SOURCES)}

# promtool's lint findings that containerd's own family names draw; the exit status then is 3
# ("lint problems"), never 1 (a page that does not parse).
INHERITED_LINT = (
    'non-counter metrics should not have "_total" suffix',
    'use base unit "seconds" instead of "nanoseconds"',
    'use base unit "seconds" instead of "microseconds"',
)


def _fill(msg: message.Message, prefix: str, values: dict[str, int]) -> None:
    """Give every singular integer field of ``msg`` (nested ones included) its own value."""
    for field in msg.DESCRIPTOR.fields:
        if field.is_repeated:
            continue
        path = f"{prefix}{field.name}"
        if field.message_type is not None:
            _fill(getattr(msg, field.name), f"{path}.", values)
        elif field.cpp_type in (field.CPPTYPE_UINT64, field.CPPTYPE_UINT32):
            values[path] = 1000 + len(values)
            setattr(msg, field.name, values[path])


def _samples(families: Sequence[Any]) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {f.name: [(dict(s.labels), s.value) for s in f.samples] for f in families}


def _page_samples(page: bytes) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {
        f.name: [(dict(s.labels), s.value) for s in f.samples]
        for f in text_string_to_metric_families(page.decode())
    }


def _pack(stats: v1.Metrics | v2.Metrics) -> any_pb2.Any:
    return any_pb2.Any(type_url=stats.DESCRIPTOR.full_name, value=stats.SerializeToString())


# --------------------------------------------------------------------------- the tables


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_family_names_and_labels_are_containerds(version: str) -> None:
    expected, _ = EXPECTED[version]
    ours = {f.name: f.labels for f in families_for(STATS_CLASSES[version])}
    assert ours == expected
    assert all(f.name.startswith("container_") for f in families_for(STATS_CLASSES[version]))


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_each_unlabelled_family_reads_containerds_field(version: str) -> None:
    _, sources = EXPECTED[version]
    stats = STATS_CLASSES[version]()
    values: dict[str, int] = {}
    _fill(stats, "", values)
    got = _samples(render([("ns1", "c1", stats, {})]))
    for name, path in sources.items():
        assert path in values, f"{name}: containerd's field {path} is not in our proto"
        assert got[name] == [({"container_id": "c1", "namespace": "ns1"}, values[path])], name
    # Every family of the table produced something except the labelled ones, which read
    # repeated fields the filler leaves empty.
    expected, _ = EXPECTED[version]
    assert set(got) == {name for name, labels in expected.items() if not labels}


def test_v1_labelled_families() -> None:
    stats = v1.Metrics(
        cpu=v1.CPUStat(usage=v1.CPUUsage(total=30, per_cpu=[10, 20])),
        hugetlb=[
            v1.HugetlbStat(usage=1, max=2, failcnt=3, pagesize="2MB"),
            v1.HugetlbStat(usage=4, max=5, failcnt=6, pagesize="1GB"),
        ],
        blkio=v1.BlkIOStat(
            io_service_bytes_recursive=[
                v1.BlkIOEntry(op="Read", device="/dev/vda", major=252, minor=0, value=4096),
                v1.BlkIOEntry(op="Write", device="/dev/vda", major=252, minor=0, value=512),
            ],
            io_time_recursive=[v1.BlkIOEntry(op="", device="", major=8, minor=16, value=7)],
        ),
    )
    got = _samples(render([("default", "web", stats, {})]))
    base = {"container_id": "web", "namespace": "default"}
    assert got["container_per_cpu_nanoseconds"] == [
        ({**base, "cpu": "0"}, 10.0),
        ({**base, "cpu": "1"}, 20.0),
    ]
    assert got["container_hugetlb_usage_bytes"] == [
        ({**base, "page": "2MB"}, 1.0),
        ({**base, "page": "1GB"}, 4.0),
    ]
    assert got["container_hugetlb_max_bytes"][1] == ({**base, "page": "1GB"}, 5.0)
    assert got["container_hugetlb_failcnt_total"][0] == ({**base, "page": "2MB"}, 3.0)
    read = {**base, "op": "Read", "device": "/dev/vda", "major": "252", "minor": "0"}
    assert got["container_blkio_io_service_bytes_recursive_bytes"][0] == (read, 4096.0)
    assert got["container_blkio_io_service_bytes_recursive_bytes"][1][1] == 512.0
    time_labels = {**base, "op": "", "device": "", "major": "8", "minor": "16"}
    assert got["container_blkio_io_time_recursive_total"] == [(time_labels, 7.0)]
    # blkio was sent, but these files had no entries: no samples, so no family.
    assert "container_blkio_sectors_recursive_total" not in got


def test_v2_io_families() -> None:
    stats = v2.Metrics(
        io=v2.IOStat(
            usage=[
                v2.IOEntry(major=8, minor=0, rbytes=100, wbytes=200, rios=3, wios=4),
                v2.IOEntry(major=253, minor=1, rbytes=5),
            ]
        )
    )
    got = _samples(render([("k8s.io", "db", stats, {})]))
    dev = {"container_id": "db", "namespace": "k8s.io", "major": "8", "minor": "0"}
    assert got["container_io_rbytes_bytes"][0] == (dev, 100.0)
    assert got["container_io_wbytes_bytes"][0] == (dev, 200.0)
    assert got["container_io_rios_total"][0] == (dev, 3.0)
    assert got["container_io_wios_total"][0] == (dev, 4.0)
    assert got["container_io_rbytes_bytes"][1] == ({**dev, "major": "253", "minor": "1"}, 5.0)
    assert set(got) == {
        "container_io_rbytes_bytes",
        "container_io_wbytes_bytes",
        "container_io_rios_total",
        "container_io_wios_total",
    }


def test_sections_the_shim_left_out_give_no_families() -> None:
    assert render([("ns", "empty", v1.Metrics(), {})]) == []
    assert render([("ns", "empty", v2.Metrics(), {})]) == []
    only_pids = render([("ns", "p", v1.Metrics(pids=v1.PidsStat(current=2)), {})])
    assert [f.name for f in only_pids] == ["container_pids_current", "container_pids_limit"]
    # A present but zero section still reports its zeros, as containerd does.
    zero_cpu = _samples(render([("ns", "z", v2.Metrics(cpu=v2.CPUStat()), {})]))
    assert zero_cpu["container_cpu_usage_usec_microseconds"][0][1] == 0.0
    assert len(zero_cpu) == 6


def test_unlimited_values_survive_as_floats() -> None:
    unlimited = 2**64 - 1
    got = _samples(render([("ns", "c", v2.Metrics(pids=v2.PidsStat(limit=unlimited)), {})]))
    assert got["container_pids_limit"][0][1] == float(unlimited)


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("prefix", ["", "type.googleapis.com/"])
def test_decode_stats_by_type_url(version: str, prefix: str) -> None:
    cls = STATS_CLASSES[version]
    packed = _pack(cls(pids={"current": 7}))
    packed.type_url = prefix + packed.type_url
    decoded = decode_stats(packed)
    assert isinstance(decoded, cls)
    assert decoded.pids.current == 7
    assert {V1_URL: "v1", V2_URL: "v2"}[cls.DESCRIPTOR.full_name] == version


def test_decode_stats_rejects_other_types_and_bad_bytes() -> None:
    with pytest.raises(InvalidArgument, match=r"containerd\.types\.Metric"):
        decode_stats(any_pb2.Any(type_url="containerd.types.Metric", value=b""))
    with pytest.raises(InvalidArgument, match=r"io\.containerd\.cgroups\.v1\.Metrics"):
        decode_stats(any_pb2.Any(type_url=V1_URL, value=b"\x12\xff\xff"))


# --------------------------------------------------------------------------- the collector


def test_collector_exports_updates_and_forgets_removed_tasks() -> None:
    registry = CollectorRegistry()
    collector = TaskMetricsCollector()
    registry.register(collector)
    assert b"container_" not in generate_latest(registry)

    collector.update("default", "a", _pack(v1.Metrics(pids=v1.PidsStat(current=3))))
    collector.update(
        "default",
        "b",
        v1.Metrics(pids=v1.PidsStat(current=5)),
        labels={"runtime": "io.containerd.runc.v2"},
    )
    got = _page_samples(generate_latest(registry))
    assert got["container_pids_current"] == [
        ({"container_id": "a", "namespace": "default"}, 3.0),
        ({"container_id": "b", "namespace": "default", "runtime": "io.containerd.runc.v2"}, 5.0),
    ]
    assert collector.tasks() == [("default", "a"), ("default", "b")]

    collector.update("default", "a", v1.Metrics(pids=v1.PidsStat(current=4)))
    collector.remove("default", "b")
    collector.remove("default", "never-there")
    got = _page_samples(generate_latest(registry))
    assert got["container_pids_current"] == [({"container_id": "a", "namespace": "default"}, 4.0)]
    collector.remove("default", "a")
    assert b"container_" not in generate_latest(registry)


def test_v1_and_v2_tasks_share_the_common_families() -> None:
    collector = TaskMetricsCollector()
    collector.update("ns", "old", v1.Metrics(pids=v1.PidsStat(current=1)))
    collector.update("ns", "new", v2.Metrics(pids=v2.PidsStat(current=2)))
    got = _samples(list(collector.collect()))
    assert [labels["container_id"] for labels, _ in got["container_pids_current"]] == [
        "new",
        "old",
    ]


def test_the_collector_claims_its_family_names() -> None:
    registry = CollectorRegistry()
    registry.register(TaskMetricsCollector())
    with pytest.raises(ValueError, match="container_pids_current"):
        Gauge("container_pids_current", "clash", registry=registry)


@pytest.mark.parametrize(
    ("namespace", "container_id", "stats", "labels", "complaint"),
    [
        ("", "c", v1.Metrics(), None, "namespace"),
        ("ns", "", v1.Metrics(), None, "container id"),
        ("ns", "c", any_pb2.Any(type_url="x.Y"), None, "x.Y"),
        ("ns", "c", v1.PidsStat(), None, "PidsStat"),
        ("ns", "c", v1.Metrics(), {"namespace": "x"}, "'namespace' is set by the families"),
        ("ns", "c", v1.Metrics(), {"cpu": "x"}, "'cpu' is set by the families"),
        ("ns", "c", v1.Metrics(), {"bad-name": "x"}, "'bad-name' is not a valid label name"),
        ("ns", "c", v1.Metrics(), {"__reserved": "x"}, "'__reserved' is not a valid"),
    ],
)
def test_update_rejects_bad_input(
    namespace: str, container_id: str, stats: Any, labels: Any, complaint: str
) -> None:
    collector = TaskMetricsCollector()
    with pytest.raises(InvalidArgument, match=complaint):
        collector.update(namespace, container_id, stats, labels)
    assert collector.tasks() == []


class Source:
    """Stands in for the Tasks service: the tasks it reports running and their stats."""

    def __init__(self) -> None:
        self.running: list[TaskRef] = []
        self.stats_by_id: dict[str, any_pb2.Any | Exception] = {}
        self.gate: asyncio.Event | None = None
        self.calls = 0

    async def running_tasks(self) -> Sequence[TaskRef]:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        return list(self.running)

    async def stats(self, task: TaskRef) -> any_pb2.Any:
        answer = self.stats_by_id[task.container_id]
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_a_scrape_refreshes_from_the_source_on_the_loop() -> None:
    source = Source()
    source.running = [
        TaskRef("default", "up", {"runtime": "io.containerd.runc.v2"}),
        TaskRef("default", "gone"),
        TaskRef("default", "garbled"),
    ]
    source.stats_by_id = {
        "up": _pack(v2.Metrics(memory=v2.MemoryStat(usage=4096))),
        "gone": NotFound("task gone"),
        "garbled": any_pb2.Any(type_url="containerd.types.Metric", value=b""),
    }
    registry = CollectorRegistry()
    collector = register(registry, source)

    # The endpoint renders in a worker thread; the refresh runs on this loop meanwhile.
    got = _page_samples(await asyncio.to_thread(generate_latest, registry))
    assert got["container_memory_usage_bytes"] == [
        ({"container_id": "up", "namespace": "default", "runtime": "io.containerd.runc.v2"}, 4096.0)
    ]
    assert collector.tasks() == [("default", "up")]

    # A task that stopped running leaves the page at the next scrape.
    source.running = []
    got = _page_samples(await asyncio.to_thread(generate_latest, registry))
    assert not any(name.startswith("container_") for name in got)
    assert source.calls == 2


async def test_a_scrape_on_the_loop_thread_serves_the_snapshot_without_waiting() -> None:
    source = Source()
    collector = TaskMetricsCollector(source, asyncio.get_running_loop())
    collector.update("ns", "kept", v1.Metrics(pids=v1.PidsStat(current=1)))
    got = _samples(list(collector.collect()))  # on the loop: no refresh, no deadlock
    assert got["container_pids_current"][0][0]["container_id"] == "kept"
    assert source.calls == 0


async def test_a_stuck_source_leaves_the_previous_snapshot() -> None:
    source = Source()
    collector = TaskMetricsCollector(source, asyncio.get_running_loop(), timeout=0.2)
    collector.update("ns", "kept", v1.Metrics(pids=v1.PidsStat(current=1)))
    source.gate = asyncio.Event()  # never set: running_tasks() hangs
    got = _samples(await asyncio.to_thread(lambda: list(collector.collect())))
    assert got["container_pids_current"][0][0]["container_id"] == "kept"
    assert source.calls == 1


def test_a_source_needs_its_loop() -> None:
    with pytest.raises(ValueError, match="event loop"):
        TaskMetricsCollector(Source())


# --------------------------------------------------------------------------- promtool


def promtool_findings(page: bytes) -> list[str]:
    """promtool's lint lines for ``page``; fails if promtool cannot parse the page."""
    out = subprocess.run(
        ["promtool", "check", "metrics"], input=page, capture_output=True, timeout=60
    )
    text = (out.stdout + out.stderr).decode()
    assert out.returncode in (0, 3), f"promtool exit {out.returncode}: {text}"
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.promtool
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_promtool_parses_every_family(version: str) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("needs promtool (Debian package prometheus)")
    stats = STATS_CLASSES[version]()
    _fill(stats, "", {})
    if isinstance(stats, v1.Metrics):
        stats.cpu.usage.per_cpu.extend([1, 2])
        stats.hugetlb.add(usage=1, pagesize="2MB")
        for field in stats.blkio.DESCRIPTOR.fields:
            getattr(stats.blkio, field.name).add(op="Read", device="/dev/sda", major=8, value=1)
    else:
        stats.io.usage.add(major=8, rbytes=1)
    collector = TaskMetricsCollector()
    collector.update("default", "c1", stats, labels={"runtime": "io.containerd.runc.v2"})
    registry = CollectorRegistry()
    registry.register(collector)
    page = generate_latest(registry)
    expected, _ = EXPECTED[version]
    assert set(_page_samples(page)) == set(expected)
    for line in promtool_findings(page):
        name, _, finding = line.partition(" ")
        assert name in expected and finding in INHERITED_LINT, line
