"""The daemon's metric families, and the page that federates its plugins'.

``DaemonMetrics`` holds the daemon's own families on the process registry
(the gRPC server families come from the harness).  ``FederatingRegistry`` is
what the daemon's /v1/metrics serves: its own families plus, at every scrape,
each proxy plugin's /v1/metrics page with a ``plugin`` label added.  Families
present on both sides are merged into one (the daemon's samples carry no
``plugin`` label), so ``grpc_server_handled_total`` or
``process_resident_memory_bytes`` answer for the whole set from one target.
"""

from __future__ import annotations

import concurrent.futures
import logging
import platform
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from services.harness.metrics import HANDLING_BUCKETS, METRICS_PATH

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT = 2.0
PLUGIN_LABEL = "plugin"


@dataclass
class DaemonMetrics:
    """berthd_* families: build info, proxy state and calls, supervised restarts."""

    registry: CollectorRegistry
    build_info: Gauge = field(init=False)
    proxy_up: Gauge = field(init=False)
    proxy_calls: Counter = field(init=False)
    proxy_latency: Histogram = field(init=False)
    restarts: Counter = field(init=False)
    hung_kills: Counter = field(init=False)
    plugin_status: Gauge = field(init=False)

    def __post_init__(self) -> None:
        r = self.registry
        self.build_info = Gauge(
            "berthd_build_info",
            "Always 1; labels carry the daemon's version, revision and Python version.",
            ("version", "revision", "python_version"),
            registry=r,
        )
        self.proxy_up = Gauge(
            "berthd_proxy_plugin_up",
            "1 while the proxy plugin answers on its socket, 0 while it is down.",
            ("plugin", "type"),
            registry=r,
        )
        self.proxy_calls = Counter(
            "berthd_proxy_calls",
            "Calls the daemon relayed to a proxy plugin, by final status code.",
            ("plugin", "method", "grpc_code"),
            registry=r,
        )
        self.proxy_latency = Histogram(
            "berthd_proxy_call_duration_seconds",
            "Latency of calls relayed to a proxy plugin, in seconds.",
            ("plugin", "method"),
            buckets=HANDLING_BUCKETS,
            registry=r,
        )
        self.restarts = Counter(
            "berthd_supervised_restarts",
            "Times the daemon restarted a supervised plugin process after it exited.",
            ("plugin",),
            registry=r,
        )
        self.hung_kills = Counter(
            "berthd_supervised_hung_kills",
            "Times the daemon killed a supervised plugin that kept its socket open "
            "but stopped answering (it is then restarted).",
            ("plugin",),
            registry=r,
        )
        self.plugin_status = Gauge(
            "berthd_plugin_loaded",
            "1 per plugin that initialised, 0 when it failed or was skipped.",
            ("type", "id"),
            registry=r,
        )

    def set_build(self, version: str, revision: str) -> None:
        self.build_info.labels(version, revision, platform.python_version()).set(1)


@dataclass(frozen=True)
class ScrapeTarget:
    plugin: str
    address: str  # HOST:PORT serving /v1/metrics


def _fetch(target: ScrapeTarget) -> list[Metric]:
    url = f"http://{target.address}{METRICS_PATH}"
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT) as resp:
        text = resp.read().decode("utf-8", errors="replace")
    return list(text_string_to_metric_families(text))


def _relabel(s: Sample, plugin: str) -> Sample:
    labels = dict(s.labels)
    if PLUGIN_LABEL in labels:  # keep a plugin's own label, as Prometheus does
        labels["exported_" + PLUGIN_LABEL] = labels[PLUGIN_LABEL]
    labels[PLUGIN_LABEL] = plugin
    return Sample(s.name, labels, s.value, s.timestamp, s.exemplar)


_OM_SUFFIXES = ("_created", "_gsum", "_gcount")


def _fold(families: list[Metric]) -> list[Metric]:
    """Put the ``X_created`` gauges a text page carries back into family X.

    The text format writes a counter's creation times as a separate gauge
    family; re-exposing that beside the merged counter would announce
    ``X_created`` twice.  Inside family X, the writer emits them once.
    """
    by_name = {m.name: m for m in families}
    out = []
    for m in families:
        base = next((m.name[: -len(x)] for x in _OM_SUFFIXES if m.name.endswith(x)), None)
        owner = by_name.get(base) if base and m.type == "gauge" else None
        if owner is not None and owner.type in ("counter", "histogram", "gaugehistogram"):
            owner.samples.extend(m.samples)
        else:
            out.append(m)
    return out


def _copy(m: Metric) -> Metric:
    out = Metric(m.name, m.documentation, m.type, m.unit)
    out.samples = list(m.samples)
    return out


class FederatingRegistry(CollectorRegistry):
    """A read-only view: ``local``'s families merged with the targets' pages.

    ``targets`` is called at every collection, so plugins that come and go
    (or get a new metrics port on restart) are followed.  Scrapes run in
    parallel; a plugin that does not answer only sets its
    ``berthd_plugin_scrape_up`` to 0.
    """

    def __init__(
        self, local: CollectorRegistry, targets: Callable[[], Sequence[ScrapeTarget]]
    ) -> None:
        super().__init__(auto_describe=False)
        self.local = local
        self.targets = targets
        self._pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="scrape")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _scrape(
        self, targets: Sequence[ScrapeTarget]
    ) -> Iterator[tuple[str, list[Metric] | None, float]]:
        start = time.perf_counter()
        futures = {t: self._pool.submit(_fetch, t) for t in targets}
        for t, fut in futures.items():
            try:
                families: list[Metric] | None = fut.result(SCRAPE_TIMEOUT + 1)
            except Exception as e:
                log.debug("scraping plugin %s at %s failed: %s", t.plugin, t.address, e)
                families = None
            yield t.plugin, families, time.perf_counter() - start

    def collect(self) -> Iterable[Metric]:
        own = [_copy(m) for m in self.local.collect()]
        by_name = {m.name: m for m in own}
        up = GaugeMetricFamily(
            "berthd_plugin_scrape_up",
            "1 when the daemon could read the plugin's /v1/metrics page at this scrape.",
            labels=[PLUGIN_LABEL],
        )
        took = GaugeMetricFamily(
            "berthd_plugin_scrape_duration_seconds",
            "Seconds the daemon waited for the plugin's /v1/metrics page at this scrape.",
            labels=[PLUGIN_LABEL],
        )
        extra: list[Metric] = []
        try:
            targets = list(self.targets())
        except Exception:
            log.exception("listing metrics targets failed")
            targets = []
        for plugin, families, seconds in self._scrape(targets):
            up.add_metric([plugin], 0 if families is None else 1)
            took.add_metric([plugin], seconds)
            for fam in _fold(families or []):
                samples = [_relabel(s, plugin) for s in fam.samples]
                mine = by_name.get(fam.name)
                if mine is None:
                    mine = Metric(fam.name, fam.documentation, fam.type, fam.unit)
                    by_name[fam.name] = mine
                    extra.append(mine)
                elif mine.type != fam.type:
                    log.debug(
                        "plugin %s: family %s has type %s, daemon's is %s; left out",
                        plugin,
                        fam.name,
                        fam.type,
                        mine.type,
                    )
                    continue
                mine.samples.extend(samples)
        return [*own, *extra, up, took]
