"""One registration per ``[proxy_plugins.NAME]`` entry.

As in containerd (services/server/server.go, LoadPlugins): the type is
``content``/``snapshot``/``diff`` or the full type string, the id is the
entry's name, the exports are the configured ones plus ``address``, the
platform is the configured one or this machine's.  The instance is a
``ProxyConnection`` whose monitor keeps dialing, so a plugin that is down at
start still loads; only a bad entry (unknown type, no address, a command that
cannot be found) fails the plugin's init.  When the entry has a ``command``,
the init starts it under the supervisor first.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from api import errdefs
from daemon import platforms, registry
from daemon.config import METRICS_AUTO, PROXY_TYPES, ProxyPluginConfig
from daemon.metrics import DaemonMetrics, ScrapeTarget
from daemon.proxy import ProxyConnection
from daemon.proxybackends import ProxiedContentStore, ProxiedDiffer, ProxiedSnapshotter, ProxyPlugin
from daemon.registry import Init, InitContext, Registration
from daemon.supervisor import Child, ChildSpec, Supervisor

log = logging.getLogger(__name__)

_BACKENDS: dict[str, type[ProxyPlugin]] = {
    registry.CONTENT: ProxiedContentStore,
    registry.SNAPSHOT: ProxiedSnapshotter,
    registry.DIFF: ProxiedDiffer,
}
SUPPORTED_TYPES = frozenset(PROXY_TYPES.values())
assert set(_BACKENDS) == SUPPORTED_TYPES, "every proxy type needs a typed backend"


def _reported_metrics(
    name: str, child: Child, exports: dict[str, str], targets: ScrapeTargets | None
) -> None:
    address = child.status.get("METRICS_ADDRESS", "")
    if not address:
        log.warning("proxy plugin %s: ready without telling its metrics address", name)
        return
    exports["metrics_address"] = address
    if targets is not None:
        targets.set(name, address)


@dataclass(frozen=True)
class ProxyOptions:
    """Daemon-wide settings the proxy inits need (an InitContext resource)."""

    metrics_enabled: bool = False  # the daemon serves /v1/metrics: "auto" gets a port


class ScrapeTargets:
    """The plugins' metrics addresses, filled in as proxy plugins load."""

    def __init__(self) -> None:
        self._targets: dict[str, ScrapeTarget] = {}

    def set(self, plugin: str, address: str) -> None:
        self._targets[plugin] = ScrapeTarget(plugin, address)

    def all(self) -> list[ScrapeTarget]:
        return list(self._targets.values())


def _make_init(name: str, p: ProxyPluginConfig) -> Init:
    async def init(ic: InitContext) -> ProxyPlugin:
        where = f"{p.source}: proxy_plugins.{name}"
        if p.plugin_type not in SUPPORTED_TYPES:
            raise errdefs.InvalidArgument(f"{where}: unknown proxy plugin type {p.type!r}")
        if not p.address:
            raise errdefs.InvalidArgument(f"{where}: address is required")
        ic.meta.exports.update(p.exports)
        ic.meta.exports["address"] = p.address
        try:
            ic.meta.platforms.append(
                platforms.parse(p.platform) if p.platform else platforms.default()
            )
        except errdefs.InvalidArgument as e:
            # containerd logs and carries on with an empty platform
            log.warning("proxy plugin %s: skipping bad platform: %s", name, e)
        ic.meta.capabilities.extend(p.capabilities)

        options = ic.optional(ProxyOptions)
        metrics_enabled = options is not None and options.metrics_enabled
        metrics_address = p.metrics_address
        argv = list(p.command)
        targets = ic.optional(ScrapeTargets)
        auto = metrics_address == METRICS_AUTO
        if auto:
            metrics_address = ""
            if metrics_enabled and argv:
                # Any free port, bound by the child itself: it reports the
                # address it got when ready (and again after a restart).
                argv += ["--metrics-address", "127.0.0.1:0"]
        if metrics_address:
            ic.meta.exports["metrics_address"] = metrics_address
            if targets is not None:
                targets.set(name, metrics_address)
        child: Child | None = None
        supervisor: Supervisor | None = None
        if argv:
            supervisor = ic.resource(Supervisor)
            child = await supervisor.start(
                ChildSpec(name, tuple(argv), dict(p.env), socket=p.address)
            )
            ic.meta.exports["command"] = " ".join(argv)
            log.info("proxy plugin %s: supervising pid %s", name, child.pid)
            if auto and metrics_enabled:
                child.on_ready.append(
                    functools.partial(_reported_metrics, name, child, ic.meta.exports, targets)
                )
        else:
            # Another entry's command may serve this socket: readiness waits for it.
            supervisor = ic.optional(Supervisor)
        conn = ProxyConnection(name, p.plugin_type, p.address, ic.optional(DaemonMetrics))
        conn.start()
        return _BACKENDS[p.plugin_type](conn, child, supervisor)

    return init


def registrations(proxies: Mapping[str, ProxyPluginConfig]) -> list[Registration]:
    regs = []
    for name, p in proxies.items():
        if p.plugin_type not in SUPPORTED_TYPES:
            # containerd registers it anyway (and warns); ours fails its init,
            # so `ctr plugins ls` shows the entry as an error with the reason.
            log.warning(
                "%s: proxy_plugins.%s: unknown proxy plugin type %r", p.source, name, p.type
            )
        regs.append(
            Registration(p.plugin_type or "io.containerd.unknown.v1", name, _make_init(name, p))
        )
    return regs
