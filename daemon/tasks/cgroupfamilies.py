"""containerd's ``container_*`` families, computed from decoded cgroup statistics.

A runc shim answers Task.Stats with an Any holding ``io.containerd.cgroups.v1.Metrics``
(cgroup v1 host) or ``io.containerd.cgroups.v2.Metrics`` (unified host).  containerd's
cgroups task monitor (metrics/cgroups/v1 and v2 in 1.6.20, unchanged through 2.x) turns
them into one gauge family per figure.  The tables here give the same families: the same
names, unit suffixes included even where containerd's suffix is not the unit
(``container_memory_pgfault_bytes`` counts faults, ``*_total`` families are gauges), the
labels ``container_id`` and ``namespace``, and the per-family labels (``cpu``;
``op``/``device``/``major``/``minor``; ``page``).  The help texts are ours.

As in containerd, a section the shim left out (no ``cpu``, no ``blkio``) yields no
samples, and a family without samples is left off the page.  The v1 OOM counter
(``container_memory_oom_total``, counted from eventfd notifications) is not produced:
containerd 1.6 to 2.x only counts it for tasks whose cgroup it holds in-process, never for
shim v2 tasks.  On a v2 host ``container_memory_oom_total`` is a gauge from memory.events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Generic, TypeVar

from google.protobuf import any_pb2, message
from prometheus_client.metrics_core import Metric

from api.cgroups.v1 import metrics_pb2 as v1
from api.cgroups.v2 import metrics_pb2 as v2
from api.errdefs import InvalidArgument

V1_URL = "io.containerd.cgroups.v1.Metrics"
V2_URL = "io.containerd.cgroups.v2.Metrics"
CgroupMetrics = v1.Metrics | v2.Metrics

# The labels every family has (containerd's metric.go: IDName, then "namespace").
ID_LABEL = "container_id"
NAMESPACE_LABEL = "namespace"

M = TypeVar("M", v1.Metrics, v2.Metrics)
Values = list[tuple[tuple[str, ...], float]]


def decode_stats(stats: any_pb2.Any) -> CgroupMetrics:
    """The cgroup statistics in a shim's Stats answer.

    Accepts the bare type URL the shim uses and the ``type.googleapis.com/`` form.
    Raises InvalidArgument for any other type, or bytes that do not decode.
    """
    name = stats.type_url.rsplit("/", 1)[-1]
    cls: type[CgroupMetrics]
    if name == V1_URL:
        cls = v1.Metrics
    elif name == V2_URL:
        cls = v2.Metrics
    else:
        raise InvalidArgument(
            f"task stats: type url {stats.type_url!r} is neither {V1_URL} nor {V2_URL}"
        )
    out = cls()
    try:
        out.ParseFromString(stats.value)
    except message.DecodeError as e:
        raise InvalidArgument(f"task stats: {name}: {e}") from None
    return out


@dataclass(frozen=True)
class Family(Generic[M]):
    """One family: full name, help, a reader of its samples, labels beyond the two above."""

    name: str
    help: str
    values: Callable[[M], Values]
    labels: tuple[str, ...] = ()


def _gauges(rows: Iterable[tuple[str, str, str]]) -> list[Family[Any]]:
    """Unlabelled families from ``(name, help, field path)`` rows.

    The first path component is the section: when the shim did not send it, the family
    has no sample for the task (containerd's ``if stats.X == nil``).
    """

    def reader(path: str) -> Callable[[Any], Values]:
        section, get = path.split(".", 1)[0], attrgetter(path)
        return lambda m: [((), float(get(m)))] if m.HasField(section) else []

    return [Family(f"container_{name}", help, reader(path)) for name, help, path in rows]


def _per_cpu(m: v1.Metrics) -> Values:
    if not m.HasField("cpu"):
        return []
    return [((str(i),), float(v)) for i, v in enumerate(m.cpu.usage.per_cpu)]


def _hugetlb(attr: str) -> Callable[[v1.Metrics], Values]:
    return lambda m: [((h.pagesize,), float(getattr(h, attr))) for h in m.hugetlb]


def _blkio(attr: str) -> Callable[[v1.Metrics], Values]:
    def values(m: v1.Metrics) -> Values:
        if not m.HasField("blkio"):
            return []
        entries = getattr(m.blkio, attr)
        return [((e.op, e.device, str(e.major), str(e.minor)), float(e.value)) for e in entries]

    return values


def _io(attr: str) -> Callable[[v2.Metrics], Values]:
    def values(m: v2.Metrics) -> Values:
        if not m.HasField("io"):
            return []
        return [((str(e.major), str(e.minor)), float(getattr(e, attr))) for e in m.io.usage]

    return values


# ---------------------------------------------------------------------------- cgroup v1

# memory.stat keys: (family part, MemoryStat field, what it holds).  The total_* forms
# (descendants included) follow the same list.
_V1_MEMORY_STAT = (
    ("cache", "cache", "page cache"),
    ("rss", "rss", "anonymous memory and swap cache"),
    ("rss_huge", "rss_huge", "anonymous transparent huge pages"),
    ("mapped_file", "mapped_file", "memory-mapped file pages"),
    ("dirty", "dirty", "file pages waiting to be written back"),
    ("writeback", "writeback", "file pages being written back"),
    ("pgpgin", "pg_pg_in", "pages charged to the cgroup (a count)"),
    ("pgpgout", "pg_pg_out", "pages uncharged from the cgroup (a count)"),
    ("pgfault", "pg_fault", "page faults (a count)"),
    ("pgmajfault", "pg_maj_fault", "major page faults (a count)"),
    ("inactive_anon", "inactive_anon", "anonymous memory on the inactive LRU list"),
    ("active_anon", "active_anon", "anonymous memory on the active LRU list"),
    ("inactive_file", "inactive_file", "file pages on the inactive LRU list"),
    ("active_file", "active_file", "file pages on the active LRU list"),
    ("unevictable", "unevictable", "memory that cannot be reclaimed"),
)
# The four memory counters: (family part, MemoryStat field, what they count).
_V1_MEMORY_COUNTERS = (
    ("usage", "usage", "memory"),
    ("swap", "swap", "memory plus swap (memsw)"),
    ("kernel", "kernel", "kernel memory (kmem)"),
    ("kerneltcp", "kernel_tcp", "kernel TCP buffer memory (kmem.tcp)"),
)
_BLKIO_LABELS = ("op", "device", "major", "minor")

# fmt: off
# containerd's order: pids, cpu, memory, hugetlb, blkio (metrics/cgroups/v1/metrics.go).
V1_FAMILIES: tuple[Family[v1.Metrics], ...] = (
    *_gauges(
        [
            ("pids_limit", "Limit on the number of tasks (pids.max; 0 when unlimited).",
             "pids.limit"),
            ("pids_current", "Number of tasks in the cgroup.", "pids.current"),
            ("cpu_total_nanoseconds", "CPU time consumed (cpuacct.usage).", "cpu.usage.total"),
            ("cpu_kernel_nanoseconds", "CPU time consumed in kernel mode.", "cpu.usage.kernel"),
            ("cpu_user_nanoseconds", "CPU time consumed in user mode.", "cpu.usage.user"),
        ]
    ),
    Family("container_per_cpu_nanoseconds", "CPU time consumed on each CPU.", _per_cpu, ("cpu",)),
    *_gauges(
        [
            ("cpu_throttle_periods_total", "CFS enforcement periods elapsed.",
             "cpu.throttling.periods"),
            ("cpu_throttled_periods_total", "CFS periods in which the cgroup was throttled.",
             "cpu.throttling.throttled_periods"),
            ("cpu_throttled_time_nanoseconds", "Time the cgroup spent throttled.",
             "cpu.throttling.throttled_time"),
        ]
    ),
    *_gauges(
        (f"memory_{part}_bytes", f"memory.stat {part}: {what}.", f"memory.{field}")
        for part, field, what in _V1_MEMORY_STAT
    ),
    *_gauges(
        [
            ("memory_hierarchical_memory_limit_bytes",
             "memory.stat hierarchical_memory_limit: the memory limit in force, ancestors "
             "included.", "memory.hierarchical_memory_limit"),
            ("memory_hierarchical_memsw_limit_bytes",
             "memory.stat hierarchical_memsw_limit: the memory plus swap limit in force, "
             "ancestors included.", "memory.hierarchical_swap_limit"),
        ]
    ),
    *_gauges(
        (f"memory_total_{part}_bytes",
         f"memory.stat total_{part}: {what}, descendant cgroups included.",
         f"memory.total_{field}")
        for part, field, what in _V1_MEMORY_STAT
    ),
    *_gauges(
        row
        for part, field, what in _V1_MEMORY_COUNTERS
        for row in (
            (f"memory_{part}_failcnt_total", f"Times the {what} limit was hit.",
             f"memory.{field}.failcnt"),
            (f"memory_{part}_limit_bytes", f"Limit on {what}.", f"memory.{field}.limit"),
            (f"memory_{part}_max_bytes", f"Highest recorded {what} usage.",
             f"memory.{field}.max"),
            (f"memory_{part}_usage_bytes", f"Current {what} usage.", f"memory.{field}.usage"),
        )
    ),
    Family("container_hugetlb_usage_bytes", "Huge page usage, by page size.",
           _hugetlb("usage"), ("page",)),
    Family("container_hugetlb_failcnt_total", "Times the huge page limit was hit, by page size.",
           _hugetlb("failcnt"), ("page",)),
    Family("container_hugetlb_max_bytes", "Highest recorded huge page usage, by page size.",
           _hugetlb("max"), ("page",)),
    Family("container_blkio_io_merged_recursive_total", "Block requests merged.",
           _blkio("io_merged_recursive"), _BLKIO_LABELS),
    Family("container_blkio_io_queued_recursive_total", "Block requests queued.",
           _blkio("io_queued_recursive"), _BLKIO_LABELS),
    Family("container_blkio_io_service_bytes_recursive_bytes",
           "Bytes transferred to and from block devices.",
           _blkio("io_service_bytes_recursive"), _BLKIO_LABELS),
    Family("container_blkio_io_service_time_recursive_total",
           "Block request service time, in nanoseconds.",
           _blkio("io_service_time_recursive"), _BLKIO_LABELS),
    Family("container_blkio_io_serviced_recursive_total", "Block requests issued.",
           _blkio("io_serviced_recursive"), _BLKIO_LABELS),
    Family("container_blkio_io_time_recursive_total",
           "Device time given to the cgroup, in milliseconds.",
           _blkio("io_time_recursive"), _BLKIO_LABELS),
    Family("container_blkio_sectors_recursive_total",
           "Sectors transferred to and from block devices.",
           _blkio("sectors_recursive"), _BLKIO_LABELS),
)
# fmt: on

# ---------------------------------------------------------------------------- cgroup v2

# MemoryStat fields containerd exports, each as container_memory_<field>_bytes: first
# the usage and limit files, then memory.stat keys.
_V2_MEMORY_FILES = (
    ("usage", "memory.current", "memory in use"),
    ("usage_limit", "memory.max", "the memory limit"),
    ("swap_usage", "memory.swap.current", "swap in use"),
    ("swap_limit", "memory.swap.max", "the swap limit"),
)
_V2_MEMORY_STAT = (
    ("file_mapped", "memory-mapped file pages"),
    ("file_dirty", "file pages waiting to be written back"),
    ("file_writeback", "file pages being written back"),
    ("pgactivate", "pages moved to the active list (a count)"),
    ("pgdeactivate", "pages moved to the inactive list (a count)"),
    ("pgfault", "page faults (a count)"),
    ("pgmajfault", "major page faults (a count)"),
    ("pglazyfree", "pages marked lazily freeable (a count)"),
    ("pgrefill", "pages scanned on the active list (a count)"),
    ("pglazyfreed", "lazily freeable pages reclaimed (a count)"),
    ("pgscan", "pages scanned on the inactive list (a count)"),
    ("pgsteal", "pages reclaimed (a count)"),
    ("inactive_anon", "anonymous memory on the inactive LRU list"),
    ("active_anon", "anonymous memory on the active LRU list"),
    ("inactive_file", "file pages on the inactive LRU list"),
    ("active_file", "file pages on the active LRU list"),
    ("unevictable", "memory that cannot be reclaimed"),
    ("anon", "anonymous memory"),
    ("file", "file-backed memory"),
    ("kernel_stack", "kernel stacks"),
    ("slab", "kernel slab memory"),
    ("sock", "network transmission buffers"),
    ("shmem", "shared memory and tmpfs"),
    ("anon_thp", "anonymous transparent huge pages"),
    ("slab_reclaimable", "slab memory that can be reclaimed"),
    ("slab_unreclaimable", "slab memory that cannot be reclaimed"),
    ("workingset_refault", "refaulted evicted pages (a count)"),
    ("workingset_activate", "refaulted pages activated (a count)"),
    ("workingset_nodereclaim", "shadow nodes reclaimed (a count)"),
    ("thp_fault_alloc", "huge pages allocated at fault (a count)"),
    ("thp_collapse_alloc", "huge pages made by collapsing (a count)"),
)
_IO_LABELS = ("major", "minor")

# fmt: off
# containerd's order: pids, cpu, memory, io (metrics/cgroups/v2/metrics.go).
V2_FAMILIES: tuple[Family[v2.Metrics], ...] = (
    *_gauges(
        [
            ("pids_limit", "Limit on the number of tasks (pids.max).", "pids.limit"),
            ("pids_current", "Number of tasks in the cgroup.", "pids.current"),
            ("cpu_usage_usec_microseconds", "CPU time consumed.", "cpu.usage_usec"),
            ("cpu_user_usec_microseconds", "CPU time consumed in user mode.", "cpu.user_usec"),
            ("cpu_system_usec_microseconds", "CPU time consumed in kernel mode.",
             "cpu.system_usec"),
            ("cpu_nr_periods_total",
             "CFS enforcement periods elapsed (with the cpu controller enabled).",
             "cpu.nr_periods"),
            ("cpu_nr_throttled_total",
             "CFS periods in which the cgroup was throttled (with the cpu controller enabled).",
             "cpu.nr_throttled"),
            ("cpu_throttled_usec_microseconds",
             "Time the cgroup spent throttled (with the cpu controller enabled).",
             "cpu.throttled_usec"),
        ]
    ),
    *_gauges(
        (f"memory_{f}_bytes", f"{source}: {what}.", f"memory.{f}")
        for f, source, what in _V2_MEMORY_FILES
    ),
    *_gauges(
        (f"memory_{f}_bytes", f"memory.stat {f}: {what}.", f"memory.{f}")
        for f, what in _V2_MEMORY_STAT
    ),
    *_gauges(
        [
            ("memory_oom_total",
             "memory.events oom: times the memory limit was hit and reclaim failed.",
             "memory_events.oom"),
        ]
    ),
    Family("container_io_rbytes_bytes", "Bytes read, by device.", _io("rbytes"), _IO_LABELS),
    Family("container_io_wbytes_bytes", "Bytes written, by device.", _io("wbytes"), _IO_LABELS),
    Family("container_io_rios_total", "Read operations, by device.", _io("rios"), _IO_LABELS),
    Family("container_io_wios_total", "Write operations, by device.", _io("wios"), _IO_LABELS),
)
# fmt: on

ALL_FAMILIES: tuple[Family[Any], ...] = (*V1_FAMILIES, *V2_FAMILIES)

# Label names a caller may not attach to a task: the two every family has, and the
# per-family ones.
RESERVED_LABELS = frozenset(
    {ID_LABEL, NAMESPACE_LABEL} | {x for f in ALL_FAMILIES for x in f.labels}
)


def families_for(metrics: CgroupMetrics | type[CgroupMetrics]) -> Sequence[Family[Any]]:
    """The family table for v1 or v2 statistics (a message or its class)."""
    cls = metrics if isinstance(metrics, type) else type(metrics)
    return V1_FAMILIES if issubclass(cls, v1.Metrics) else V2_FAMILIES


def render(tasks: Iterable[tuple[str, str, CgroupMetrics, Mapping[str, str]]]) -> list[Metric]:
    """The families for ``(namespace, container_id, statistics, extra labels)`` rows.

    Families come sorted by name, samples in row order; label names are sorted within a
    sample, as Go's client writes them.  Families without samples are left out.
    """
    families: dict[str, Metric] = {}
    for namespace, container_id, metrics, labels in tasks:
        base = {ID_LABEL: container_id, NAMESPACE_LABEL: namespace, **labels}
        for fam in families_for(metrics):
            for extra, value in fam.values(metrics):
                out = families.get(fam.name)
                if out is None:
                    out = families[fam.name] = Metric(fam.name, fam.help, "gauge")
                sample = {**base, **dict(zip(fam.labels, extra, strict=True))}
                out.add_sample(fam.name, dict(sorted(sample.items())), value)
    return [families[name] for name in sorted(families)]
