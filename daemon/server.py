"""The berthd daemon process: plugins loaded from the config, served on one socket.

Start-up, in order: check the socket is free, create root and state, build
the plugin graph (built-ins plus one plugin per ``[proxy_plugins]`` entry;
proxy inits start supervised plugin processes), initialise it, give
supervised plugins a bounded moment to come up, start the metrics endpoint,
serve (``READY=1`` to systemd).  SIGTERM: stop accepting, let in-flight calls
finish (the relayed ones still reach their plugins), close the proxy
connections, stop the supervised plugins, stop metrics, remove the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterable, Sequence

from daemon import federation, health, introspection, proxyplugins, registry, version
from daemon.config import Config
from daemon.metadata import plugin as metadata_plugin
from daemon.metrics import DaemonMetrics, FederatingRegistry
from daemon.proxy import ProxyConnection
from daemon.proxyplugins import ProxyOptions, ScrapeTargets
from daemon.registry import InitContext, PluginSet, Registration, Registry, load
from daemon.service import GrpcService
from daemon.supervisor import Supervisor
from daemon.version import BuildInfo, build_info
from services.harness.metrics import MetricsEndpoint
from services.harness.server import PluginServer, ServerConfig, prepare_socket

log = logging.getLogger(__name__)

# How long start-up waits for supervised plugins to answer before serving anyway.
SUPERVISED_START_TIMEOUT = 15.0


def builtin_registrations() -> list[Registration]:
    """The daemon's own plugins.

    The metadata layer (namespaces, images, containers, leases, events, GC)
    replaces the plain content and snapshot relays with its namespaced
    services, so on the daemon socket every object is namespaced, leased and
    garbage collected as in containerd.
    """
    return metadata_plugin.with_metadata(
        [
            *introspection.REGISTRATIONS,
            *version.REGISTRATIONS,
            *health.REGISTRATIONS,
            *federation.REGISTRATIONS,
        ]
    )


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
            extras={
                "health": self.health,
                "metrics": self.metrics,
                "supervisor": self.supervisor,
                "build": self.build,
                "scrape": self.scrape_targets,
                "proxy": ProxyOptions(metrics_enabled=bool(cfg.metrics.address)),
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

    def connections(self) -> list[ProxyConnection]:
        return [p.instance for p in self.plugins.all() if isinstance(p.instance, ProxyConnection)]

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
            self.plugins = await load(ordered, self._context, cfg.required_plugins)
            for p in self.plugins.all():
                self.metrics.plugin_status.labels(p.registration.type, p.registration.id).set(
                    0 if p.error else 1
                )
                if isinstance(p.instance, GrpcService):
                    svc = p.instance
                    for name in svc.names:
                        self.add_service(name, svc.register)
                    self._serving_hooks.append(svc)
            await self._wait_supervised()
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

    async def _wait_supervised(self) -> None:
        """Give supervised plugins a moment to answer, so the first calls find them.

        A plugin whose process already exited is not waited for (it is being
        restarted with backoff and may never come up); the others get up to
        SUPERVISED_START_TIMEOUT seconds.
        """
        children = {c.spec.name: c for c in self.supervisor.children}
        waiting = [c for c in self.connections() if c.name in children]
        deadline = time.monotonic() + SUPERVISED_START_TIMEOUT
        while waiting and time.monotonic() < deadline:
            waiting = [c for c in waiting if not c.up and children[c.name].exits == 0]
            if waiting:
                await asyncio.sleep(0.02)
        for conn in self.connections():
            if conn.name in children and not conn.up:
                log.warning("%s is not up yet; serving without it for now", conn.describe)

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        return self._metrics_http.bound if self._metrics_http is not None else None

    async def _shutdown(self) -> None:
        # Metadata first: a running collection finishes and the database
        # closes while the plugins it talks to are still up.
        meta = self.plugins.find(registry.METADATA, metadata_plugin.METADATA_ID)
        if meta is not None and meta.instance is not None:
            try:
                await meta.instance.close()  # type: ignore[attr-defined]
            except Exception:
                log.exception("closing the metadata store failed")
        for conn in reversed(self.connections()):
            with contextlib.suppress(Exception):
                await conn.close()
        await self.supervisor.stop()
        if self._metrics_http is not None:
            await self._metrics_http.stop()
            self._metrics_http = None
        self.federating.close()
