"""The metadata plugins, containerd's ids and types:

- ``io.containerd.metadata.v1 berthd``: the metadata database over the
  content store and the snapshotters loaded before it (our proxy plugins);
- ``io.containerd.gc.v1 scheduler``: the collector's schedule;
- ``io.containerd.service.v1 <name>-service`` and ``io.containerd.grpc.v1
  <name>`` for namespaces, images, containers, leases, content and snapshots.

The content store and the snapshotters are whatever typed backends the
plugins loaded before it offer (``ic.instances``): for a ``[proxy_plugins]``
entry, the proxy client over the daemon's connection to it
(``daemon.proxybackends``).  The store closes at shutdown (the daemon
closes every closeable plugin, this one before the backends it uses), and
the first garbage collection waits until those backends answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from api import errdefs
from api.goduration import parse_duration
from daemon import registry
from daemon.capabilities import GrpcService, Liveness
from daemon.events import plugin as events_plugin
from daemon.events.exchange import Exchange
from daemon.metadata import backends
from daemon.metadata.scheduler import GCScheduler, SchedulerConfig
from daemon.metadata.services import MetadataServices, Service
from daemon.metrics import DaemonMetrics
from daemon.registry import InitContext, Registration
from services.content.store import ContentStore
from services.harness.health import NOT_SERVING, SERVING, HealthServicer
from services.snapshotter.snapshotter import Snapshotter

log = logging.getLogger(__name__)

METADATA_ID = "berthd"
METADATA_URI = f"{registry.METADATA}.{METADATA_ID}"
DB_FILE = backends.DB_FILE


@dataclass(frozen=True)
class MetadataConfig:
    """``[plugins."io.containerd.metadata.v1.berthd"]``."""

    backend: str = "sqlite"  # or "etcd": several nodes share one cluster's metadata
    # containerd's bolt plugin key: "shared" lets a namespace take a blob
    # another namespace has by naming its digest; "isolated" makes it send
    # the bytes.
    content_sharing_policy: str = "shared"
    # SQLite's synchronous pragma: FULL (durable at every commit) or NORMAL.
    synchronous: str = "FULL"
    # backend = "etcd" (daemon.metadata.etcd.settings says what each means).
    endpoints: tuple[str, ...] = ()
    ca: str = ""
    cert: str = ""
    key: str = ""
    prefix: str = "/berthd"
    node: str = ""  # default: the host name
    dial_timeout: str = "5s"
    request_timeout: str = "5s"
    lease_ttl: str = "10s"
    max_txn_ops: int = 128

    def __post_init__(self) -> None:
        backends.check(self)


@dataclass(frozen=True)
class GCConfig:
    """``[plugins."io.containerd.gc.v1.scheduler"]``, containerd's keys; delays are
    Go durations ("0s", "100ms")."""

    pause_threshold: float = 0.02
    deletion_threshold: int = 0
    mutation_threshold: int = 100
    schedule_delay: str = "0s"
    startup_delay: str = "100ms"


def _content_backend(ic: InitContext) -> ContentStore | None:
    stores = ic.instances(registry.CONTENT, ContentStore)  # type: ignore[type-abstract]
    return next(iter(stores.values()), None)


def _snapshotters(ic: InitContext) -> dict[str, Snapshotter]:
    return ic.instances(registry.SNAPSHOT, Snapshotter)  # type: ignore[type-abstract]


async def wait_up(backends: Sequence[object]) -> None:
    """Until every backend that reports liveness is up."""
    for b in backends:
        if not isinstance(b, Liveness) or b.up:
            continue
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def changed(up: bool, fut: asyncio.Future[None] = fut) -> None:
            if up and not fut.done():
                fut.set_result(None)

        b.on_change(changed)
        if not b.up:
            await fut


async def _init_metadata(ic: InitContext) -> MetadataServices:
    cfg: MetadataConfig = ic.config
    if cfg.content_sharing_policy not in ("shared", "isolated"):
        raise errdefs.InvalidArgument(
            f"unknown content sharing policy {cfg.content_sharing_policy!r}"
        )
    exchange = ic.plugins.get(registry.EVENT)
    assert isinstance(exchange, Exchange)
    store = await backends.open_store(cfg, ic.root, ic.meta.exports)
    content = _content_backend(ic)
    snapshotters = _snapshotters(ic)
    ic.meta.exports["policy"] = cfg.content_sharing_policy
    md = MetadataServices(
        store,
        content,
        snapshotters,
        exchange,
        shared_content=cfg.content_sharing_policy == "shared",
    )
    return md


def _metadata(ic: InitContext) -> MetadataServices:
    md = ic.plugins.get(registry.METADATA)
    assert isinstance(md, MetadataServices)
    return md


async def _init_gc(ic: InitContext) -> GCScheduler:
    cfg: GCConfig = ic.config
    md = _metadata(ic)
    md.configure_gc(
        SchedulerConfig(
            pause_threshold=cfg.pause_threshold,
            deletion_threshold=cfg.deletion_threshold,
            mutation_threshold=cfg.mutation_threshold,
            schedule_delay=parse_duration(cfg.schedule_delay),
            startup_delay=parse_duration(cfg.startup_delay),
        )
    )
    metrics = ic.optional(DaemonMetrics)
    if metrics is not None:
        md.register_metrics(metrics.registry)
    backends: list[object] = [*md.snapshotter_backends.values()]
    if md.content_backend is not None:
        backends.append(md.content_backend)
    # A store that reports liveness (etcd) must answer too.
    backends.append(md.db.store)
    md.start(lambda: wait_up(backends))
    s = md.scheduler
    ic.meta.exports.update(
        {
            "PauseThreshold": str(s.pause_threshold),
            "DeletionThreshold": str(s.deletion_threshold),
            "MutationThreshold": str(s.mutation_threshold),
            "ScheduleDelay": cfg.schedule_delay,
        }
    )
    return s


def _service_init(name: str) -> Callable[[InitContext], Any]:
    async def init(ic: InitContext) -> Service:
        for svc in _metadata(ic).servicers():
            if svc.name.rsplit(".", 1)[-1].lower() == name:
                return svc
        raise registry.SkipPlugin(f"no {name} backend loaded")

    return init


# The services whose health follows the proxy plugins behind them.
_BACKED_BY = {"content": registry.CONTENT, "snapshots": registry.SNAPSHOT}


def _follow(
    health: HealthServicer, service: str, store: Liveness | None, backends: Sequence[Liveness]
) -> Callable[[], None]:
    """Keep ``service`` SERVING while the store (if it reports liveness) and
    any of ``backends`` (if there are some) are up; returns the sync function."""

    def sync(_: bool = False) -> None:
        ok = (store is None or store.up) and (not backends or any(b.up for b in backends))
        health.set(service, SERVING if ok else NOT_SERVING)

    for c in [*backends, *([store] if store is not None else [])]:
        c.on_change(sync)
    return sync


def _grpc_init(name: str) -> Callable[[InitContext], Any]:
    async def init(ic: InitContext) -> GrpcService:
        svc = ic.plugins.get_by_id(registry.SERVICE, f"{name}-service")
        assert isinstance(svc, Service)
        on_serving = None
        health = ic.optional(HealthServicer)
        if health is not None:
            live = []
            if name in _BACKED_BY:
                live = [
                    p.instance
                    for p in ic.by_type(_BACKED_BY[name]).values()
                    if isinstance(p.instance, Liveness)
                ]
            store = _metadata(ic).db.store
            store_live = store if isinstance(store, Liveness) else None
            if live or store_live is not None:
                on_serving = _follow(health, svc.name, store_live, live)
        return GrpcService((svc.name,), svc.register, on_serving=on_serving)

    return init


_SERVICES = ("namespaces", "images", "containers", "leases", "content", "snapshots")

REGISTRATIONS: tuple[Registration, ...] = (
    Registration(
        registry.METADATA,
        METADATA_ID,
        _init_metadata,
        (registry.CONTENT, registry.SNAPSHOT, registry.EVENT),
        MetadataConfig,
    ),
    Registration(registry.GC, "scheduler", _init_gc, (registry.METADATA,), GCConfig),
    *(
        Registration(
            registry.SERVICE,
            f"{name}-service",
            _service_init(name),
            (registry.METADATA, registry.GC, registry.EVENT),
        )
        for name in _SERVICES
    ),
    *(
        Registration(registry.GRPC, name, _grpc_init(name), (registry.SERVICE,))
        for name in _SERVICES
    ),
)


def with_metadata(registrations: Sequence[Registration]) -> list[Registration]:
    """``registrations`` with the metadata layer and the event plugins added.

    The layer serves content and snapshots on the daemon socket, so there
    they see namespaces, leases and GC.
    """
    return [*registrations, *events_plugin.REGISTRATIONS, *REGISTRATIONS]
