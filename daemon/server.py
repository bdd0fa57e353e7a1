"""The berthd daemon process: plugins loaded from the config, served by capability.

Start-up, in order: check the socket is free, create root and state, build
the plugin graph (built-ins plus one plugin per ``[proxy_plugins]`` entry;
proxy inits start supervised plugin processes), initialise it, then serve
what the instances offer (``daemon.capabilities``): their gRPC services on
the gRPC socket and their ttrpc services on the ttrpc socket, after a bounded
wait for the instances that report readiness; then the metrics endpoint and
``READY=1`` to systemd.  SIGTERM: stop accepting, let in-flight calls finish,
close every closeable plugin in reverse initialisation order (the metadata
store before the proxy connections it uses), stop the supervised plugin
processes, stop metrics, remove the sockets.  This module knows no plugin by
name.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from daemon import diffservice, health, introspection, proxyplugins, version
from daemon.capabilities import Closeable, GrpcService, Readiness, ServesGrpc, ServesTtrpc
from daemon.config import Config
from daemon.metadata import plugin as metadata_plugin
from daemon.metrics import DaemonMetrics, FederatingRegistry
from daemon.peer import plugin as peer_plugin
from daemon.proxyplugins import ProxyOptions, ScrapeTargets
from daemon.registry import (
    InitContext,
    PluginSet,
    Registration,
    Registry,
    RequiredPluginError,
    load,
)
from daemon.supervisor import Supervisor
from daemon.tasks import plugin as tasks_plugin
from daemon.version import BuildInfo, build_info
from services.harness.health import HealthServicer
from services.harness.metrics import MetricsEndpoint
from services.harness.server import PluginServer, ServerConfig, prepare_socket

if TYPE_CHECKING:
    from daemon.ttrpcserver import TtrpcEndpoint

log = logging.getLogger(__name__)

# How long start-up waits for plugins that report readiness before serving anyway.
READY_TIMEOUT = 15.0


def builtin_registrations() -> list[Registration]:
    """The daemon's own plugins.

    The metadata layer (namespaces, images, containers, leases, events, GC)
    replaces the plain content and snapshot relays with its namespaced
    services, so on the daemon socket every object is namespaced, leased and
    garbage collected as in containerd.
    """
    return [
        *metadata_plugin.with_metadata(
            [
                *introspection.REGISTRATIONS,
                *version.REGISTRATIONS,
                *health.REGISTRATIONS,
                *diffservice.REGISTRATIONS,
            ]
        ),
        *tasks_plugin.REGISTRATIONS,
        *peer_plugin.REGISTRATIONS,
    ]


def plugin_configs(cfg: Config, registrations: Iterable[Registration]) -> dict[str, object]:
    """Each configurable plugin's effective config (its section decoded, or its defaults)."""
    out: dict[str, object] = {}
    for reg in registrations:
        if reg.config is None:
            continue
        section = cfg.plugin_section(reg.uri)
        out[reg.uri] = section.decode(reg.config, reg.uri) if section else reg.config()
    return out


class Daemon(PluginServer):
    def __init__(self, config: Config, registrations: Sequence[Registration] | None = None) -> None:
        uid, gid = config.grpc.uid, config.grpc.gid
        if os.geteuid() != 0 and (uid, gid) == (0, 0):
            uid = gid = -1  # the unset default; only root could hand the socket to root
        super().__init__(
            "berthd",
            ServerConfig(
                address=config.grpc.address,
                uid=uid,
                gid=gid,
                max_recv_message_size=config.grpc.max_recv_message_size,
                max_send_message_size=config.grpc.max_send_message_size,
            ),
        )
        self.cfg = config
        self.build: BuildInfo = build_info()
        self.metrics = DaemonMetrics(self.registry)
        self.metrics.set_build(self.build.version, self.build.revision)
        self.supervisor = Supervisor(self.metrics)
        self.scrape_targets = ScrapeTargets()
        self.federating = FederatingRegistry(self.registry, self.scrape_targets.all)
        regs = builtin_registrations() if registrations is None else list(registrations)
        self.plugin_registry = Registry([*regs, *proxyplugins.registrations(config.proxy_plugins)])
        self.plugins = PluginSet()
        self._metrics_http: MetricsEndpoint | None = None
        self._ttrpc: TtrpcEndpoint | None = None
        self._serving_hooks: list[GrpcService] = []
        self.on_stop.append(self._shutdown)

    def _context(self, reg: Registration, plugins: PluginSet) -> InitContext:
        cfg = self.cfg
        section = cfg.plugin_section(reg.uri)
        config: object | None = None
        if reg.config is not None:
            config = section.decode(reg.config, reg.uri) if section else reg.config()
        return InitContext(
            registration=reg,
            root=os.path.join(cfg.root, reg.uri),
            state=os.path.join(cfg.state, reg.uri),
            address=cfg.grpc.address,
            ttrpc_address=cfg.ttrpc.address,
            config=config,
            plugins=plugins,
            resources={
                HealthServicer: self.health,
                DaemonMetrics: self.metrics,
                Supervisor: self.supervisor,
                BuildInfo: self.build,
                ScrapeTargets: self.scrape_targets,
                ProxyOptions: ProxyOptions(metrics_enabled=bool(cfg.metrics.address)),
            },
        )

    def _check_sections(self) -> None:
        for uri, section in self.cfg.plugins.items():
            reg = self.plugin_registry.find(uri)
            if reg is None:
                log.warning(
                    "%s: plugins.%r: no such plugin in berthd (ignored)", section.source, uri
                )
            elif reg.config is None:
                log.warning(
                    "%s: plugins.%r: plugin takes no configuration (ignored)", section.source, uri
                )

    async def start(self) -> None:
        cfg = self.cfg
        prepare_socket(cfg.grpc.address)  # fail before starting children if another daemon serves
        for d in (cfg.root, cfg.state):
            os.makedirs(d, mode=0o711, exist_ok=True)
        if cfg.temp:
            os.makedirs(cfg.temp, mode=0o711, exist_ok=True)
            os.environ["TMPDIR"] = cfg.temp
        self._check_sections()
        try:
            ordered = self.plugin_registry.graph(cfg.disabled_plugins)
            try:
                self.plugins = await load(ordered, self._context, cfg.required_plugins)
            except RequiredPluginError as e:
                self.plugins = e.plugins  # closed by the shutdown below
                raise
            for p in self.plugins.all():
                self.metrics.plugin_status.labels(p.registration.type, p.registration.id).set(
                    0 if p.error else 1
                )
            self._serve_grpc()
            await self._serve_ttrpc()
            await self._wait_ready()
            if cfg.metrics.address:
                self._metrics_http = MetricsEndpoint(self.federating, cfg.metrics.address)
                await self._metrics_http.start()
            await super().start()
        except BaseException:
            await self._shutdown()
            raise
        for svc in self._serving_hooks:
            if svc.on_serving is not None:
                svc.on_serving()
        log.info(
            "berthd %s (%s) serving on %s with %d plugins",
            self.build.version,
            self.build.revision[:12],
            cfg.grpc.address,
            len(self.plugins.all()),
        )

    def _instances(self) -> list[object]:
        return [p.instance for p in self.plugins.all() if p.error is None]

    def _serve_grpc(self) -> None:
        for inst in self._instances():
            if isinstance(inst, ServesGrpc):
                for svc in inst.grpc_services():
                    for name in svc.names:
                        self.add_service(name, svc.register)
                    self._serving_hooks.append(svc)

    async def _serve_ttrpc(self) -> None:
        services = [
            svc
            for inst in self._instances()
            if isinstance(inst, ServesTtrpc)
            for svc in inst.ttrpc_services()
        ]
        if not services:
            return
        from daemon.ttrpcserver import TtrpcEndpoint  # only daemons with ttrpc services

        cfg = self.cfg
        uid, gid = cfg.ttrpc.uid, cfg.ttrpc.gid
        if os.geteuid() != 0 and (uid, gid) == (0, 0):
            uid = gid = -1
        self._ttrpc = TtrpcEndpoint(cfg.ttrpc.address, uid, gid)
        for svc in services:
            self._ttrpc.add(svc)
        await self._ttrpc.start()

    async def _wait_ready(self) -> None:
        """Give the plugins that report readiness (supervised processes still
        starting) a bounded moment, so the first calls find them."""
        waiting = [i for i in self._instances() if isinstance(i, Readiness)]
        if not waiting:
            return
        results = await asyncio.gather(
            *(asyncio.wait_for(r.wait_ready(), READY_TIMEOUT) for r in waiting),
            return_exceptions=True,
        )
        for r, ok in zip(waiting, results, strict=True):
            if ok is not True:
                log.warning("%s is not up yet; serving without it for now", r.describe)

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        return self._metrics_http.bound if self._metrics_http is not None else None

    async def _shutdown(self) -> None:
        if self._ttrpc is not None:
            await self._ttrpc.stop()
            self._ttrpc = None
        # Reverse init order: the metadata store (and a collection under way)
        # closes while the plugins it talks to are still reachable.
        for inst in reversed(self._instances()):
            if isinstance(inst, Closeable):
                try:
                    await inst.close()
                except Exception:
                    log.exception("closing plugin %r failed", inst)
        await self.supervisor.stop()
        if self._metrics_http is not None:
            await self._metrics_http.stop()
            self._metrics_http = None
        self.federating.close()
