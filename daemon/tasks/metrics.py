"""Task metrics for the daemon's /v1/metrics: containerd's ``container_*`` families.

Prometheus collectors are synchronous and the metrics endpoint renders in a worker thread,
while a task's statistics come from its shim over ttrpc, on the event loop.
``TaskMetricsCollector`` therefore keeps the latest decoded statistics per (namespace,
container id): ``refresh()`` (a coroutine) rebuilds that snapshot from a ``StatsSource``
(the Tasks service: its running tasks and each shim's Task.Stats answer), and
``collect()`` runs the refresh on the loop before rendering, bounded by a timeout, as the
metadata collector does (daemon/metadata/metrics.py); no endpoint hook is needed.  Without
a source, ``update()``/``remove()`` maintain the snapshot directly.

The families themselves (names, labels, which statistics feed them) are in
``daemon.tasks.cgroupfamilies``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from google.protobuf import any_pb2
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from api.cgroups.v1 import metrics_pb2 as v1
from api.cgroups.v2 import metrics_pb2 as v2
from api.errdefs import InvalidArgument, NotFound
from daemon.tasks.cgroupfamilies import (
    ALL_FAMILIES,
    RESERVED_LABELS,
    CgroupMetrics,
    decode_stats,
    render,
)

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT = 5.0
STATS_CONCURRENCY = 16

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass(frozen=True)
class TaskRef:
    """A task to export: its namespace, container id and the labels to add to its samples
    (the Tasks service passes ``{"runtime": <runtime name>}``, as containerd does)."""

    namespace: str
    container_id: str
    labels: Mapping[str, str] = field(default_factory=dict)


class StatsSource(Protocol):
    """Where ``refresh`` gets the tasks and their statistics (the Tasks service)."""

    async def running_tasks(self) -> Sequence[TaskRef]:
        """The tasks whose statistics are exported now: the running ones."""
        ...

    async def stats(self, task: TaskRef) -> any_pb2.Any:
        """The shim's Task.Stats answer for ``task``; NotFound once the task is gone."""
        ...


@dataclass(frozen=True)
class _Entry:
    metrics: CgroupMetrics
    labels: Mapping[str, str]


def _check_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    out = dict(labels or {})
    for name, value in out.items():
        if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
            raise InvalidArgument(f"task metrics: label name {name!r} is not a valid label name")
        if name in RESERVED_LABELS:
            raise InvalidArgument(f"task metrics: label {name!r} is set by the families")
        if not isinstance(value, str):
            raise InvalidArgument(f"task metrics: label {name!r} needs a string value")
    return out


def _to_metrics(stats: any_pb2.Any | CgroupMetrics) -> CgroupMetrics:
    if isinstance(stats, any_pb2.Any):
        return decode_stats(stats)
    if isinstance(stats, (v1.Metrics, v2.Metrics)):
        return stats
    raise InvalidArgument(f"task stats: unsupported value of type {type(stats).__name__}")


class TaskMetricsCollector:
    """A prometheus_client collector for the ``container_*`` families.

    Holds the latest statistics per (namespace, container id).  With a ``source`` and the
    ``loop`` it lives on, every ``collect()`` from another thread first runs ``refresh()``
    on the loop (bounded by ``timeout``; on failure or timeout the previous snapshot is
    served); a ``collect()`` on the loop thread itself serves the snapshot as it is.
    """

    def __init__(
        self,
        source: StatsSource | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        timeout: float = SCRAPE_TIMEOUT,
        concurrency: int = STATS_CONCURRENCY,
    ) -> None:
        if source is not None and loop is None:
            raise ValueError("a stats source needs the event loop it runs on")
        self.source = source
        self.loop = loop
        self.timeout = timeout
        self.concurrency = concurrency
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], _Entry] = {}

    def update(
        self,
        namespace: str,
        container_id: str,
        stats: any_pb2.Any | CgroupMetrics,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """Record the latest statistics of a task: a shim's Stats Any or a decoded message.

        Raises InvalidArgument for an empty namespace or id, a type that is not cgroup
        statistics, undecodable bytes, or an invalid or reserved label name.
        """
        if not namespace:
            raise InvalidArgument("task metrics: namespace must not be empty")
        if not container_id:
            raise InvalidArgument("task metrics: container id must not be empty")
        entry = _Entry(_to_metrics(stats), _check_labels(labels))
        with self._lock:
            self._entries[(namespace, container_id)] = entry

    def remove(self, namespace: str, container_id: str) -> None:
        """Stop exporting a task (it exited or was deleted); unknown tasks are ignored."""
        with self._lock:
            self._entries.pop((namespace, container_id), None)

    def tasks(self) -> list[tuple[str, str]]:
        """The (namespace, container id) pairs with a snapshot, sorted."""
        with self._lock:
            return sorted(self._entries)

    async def refresh(self) -> None:
        """Replace the snapshot with the source's running tasks and their current stats.

        A task whose Stats call fails (it exited meanwhile, its shim is gone) or answers
        with something undecodable is left out of this snapshot, as containerd leaves it
        out of that scrape.
        """
        if self.source is None:
            raise ValueError("refresh needs a stats source")
        source = self.source
        tasks = list(await source.running_tasks())
        gate = asyncio.Semaphore(self.concurrency)

        async def one(task: TaskRef) -> _Entry | None:
            async with gate:
                try:
                    stats = await source.stats(task)
                    return _Entry(_to_metrics(stats), _check_labels(task.labels))
                except NotFound:
                    log.debug("task %s/%s is gone; no stats", task.namespace, task.container_id)
                except Exception as e:
                    log.warning("stats of task %s/%s: %s", task.namespace, task.container_id, e)
                return None

        entries = await asyncio.gather(*(one(t) for t in tasks))
        fresh = {
            (t.namespace, t.container_id): e
            for t, e in zip(tasks, entries, strict=True)
            if e is not None
        }
        with self._lock:
            self._entries = fresh

    def _refresh_from_thread(self) -> None:
        if self.source is None or self.loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            return
        fut: concurrent.futures.Future[None] | None = None
        try:
            # Raises RuntimeError once the loop is closed (the daemon is stopping).
            fut = asyncio.run_coroutine_threadsafe(self.refresh(), self.loop)
            fut.result(self.timeout)
        except Exception as e:
            if fut is not None:
                fut.cancel()
            log.warning("task metrics: refresh failed, serving the previous snapshot: %r", e)

    def describe(self) -> Iterator[Metric]:
        """Every family name this collector may produce, so the registry can refuse
        another collector that claims one of them."""
        seen: set[str] = set()
        for fam in ALL_FAMILIES:
            if fam.name not in seen:
                seen.add(fam.name)
                yield Metric(fam.name, fam.help, "gauge")

    def collect(self) -> Iterator[Metric]:
        self._refresh_from_thread()
        with self._lock:
            rows = [(ns, cid, e.metrics, e.labels) for (ns, cid), e in self._entries.items()]
        yield from render(sorted(rows, key=lambda r: (r[0], r[1])))


def register(registry: CollectorRegistry, source: StatsSource) -> TaskMetricsCollector:
    """Add a collector that refreshes from ``source`` at every scrape (call on the loop)."""
    collector = TaskMetricsCollector(source, asyncio.get_running_loop())
    registry.register(collector)
    return collector
