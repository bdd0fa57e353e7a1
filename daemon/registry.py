"""Plugin registrations, their dependency graph and their initialisation.

The model is containerd's (plugin/plugin.go, plugin/context.go and
services/server/server.go at v1.6.20): a plugin is one ``Registration`` value
(type, id, requires, init, config type); ``Registry.graph`` orders the enabled
ones so that every plugin comes after the plugins of the types it requires;
``load`` initialises them in that order.  An init that raises ``SkipPlugin``
is skipped, any other exception is an init error; both are kept on the
``Plugin`` for introspection and only stop the start when the plugin is in
``required_plugins``.  Unlike containerd, a dependency cycle is reported
instead of recursing forever.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from api.errdefs import NotFound
from api.types import Platform as Platform

log = logging.getLogger(__name__)

T = TypeVar("T")

# containerd's plugin types (plugin/plugin.go).
INTERNAL = "io.containerd.internal.v1"
SERVICE = "io.containerd.service.v1"
GRPC = "io.containerd.grpc.v1"
TTRPC = "io.containerd.ttrpc.v1"
SNAPSHOT = "io.containerd.snapshotter.v1"
DIFF = "io.containerd.differ.v1"
CONTENT = "io.containerd.content.v1"
METADATA = "io.containerd.metadata.v1"
GC = "io.containerd.gc.v1"
EVENT = "io.containerd.event.v1"
RUNTIME_V2 = "io.containerd.runtime.v2"

ANY = "*"


class RegistrationError(ValueError):
    """A registration is malformed, duplicated, or the graph has a cycle."""


class SkipPlugin(Exception):
    """Raised by an init to say the plugin does not apply here (not a failure)."""

    # `ctr plugins ls` decides "skip" vs "error" by looking for this text.
    TEXT = "skip plugin"

    def __str__(self) -> str:
        reason = super().__str__()
        return f"{reason}: {self.TEXT}" if reason else self.TEXT


@dataclass
class Meta:
    """What an init declares about its plugin; introspection shows it."""

    platforms: list[Platform] = field(default_factory=list)
    exports: dict[str, str] = field(default_factory=dict)
    capabilities: list[str] = field(default_factory=list)


Init = Callable[["InitContext"], Awaitable[object]]


@dataclass(frozen=True)
class Registration:
    type: str
    id: str
    init: Init
    requires: tuple[str, ...] = ()
    # A frozen dataclass decoded from [plugins."<uri>"]; its defaults apply
    # when the section is absent.
    config: builtins.type | None = None

    @property
    def uri(self) -> str:
        return f"{self.type}.{self.id}"


@dataclass
class Plugin:
    """An initialised (or failed, or skipped) plugin."""

    registration: Registration
    meta: Meta
    config: object | None = None
    instance: object | None = None
    error: BaseException | None = None

    @property
    def skipped(self) -> bool:
        return isinstance(self.error, SkipPlugin)

    def get(self) -> object:
        """The instance; the init error when it failed."""
        if self.error is not None:
            raise self.error
        return self.instance


class PluginSet:
    """Initialised plugins in initialisation order, indexed by type and id."""

    def __init__(self) -> None:
        self._ordered: list[Plugin] = []
        self._by_type: dict[str, dict[str, Plugin]] = {}

    def add(self, p: Plugin) -> None:
        by_id = self._by_type.setdefault(p.registration.type, {})
        if p.registration.id in by_id:
            raise RegistrationError(f"plugin {p.registration.uri} already initialized")
        by_id[p.registration.id] = p
        self._ordered.append(p)

    def all(self) -> list[Plugin]:
        return list(self._ordered)

    def by_type(self, type_: str) -> dict[str, Plugin]:
        return dict(self._by_type.get(type_, {}))

    def find(self, type_: str, id_: str) -> Plugin | None:
        return self._by_type.get(type_, {}).get(id_)

    def get(self, type_: str) -> object:
        """The first plugin of ``type_`` that initialised; NotFound when none did."""
        for p in self._by_type.get(type_, {}).values():
            if p.error is None:
                return p.instance
        raise NotFound(f"no plugins registered for {type_}")

    def get_by_id(self, type_: str, id_: str) -> object:
        p = self.find(type_, id_)
        if p is None:
            raise NotFound(f"no {type_} plugins with id {id_}")
        return p.get()


@dataclass
class InitContext:
    """What an init gets: its dirs, its decoded config, the plugins loaded before it,
    and the daemon's own objects (supervisor, metrics, health …) by type."""

    registration: Registration
    root: str
    state: str
    address: str
    ttrpc_address: str
    config: Any
    plugins: PluginSet
    meta: Meta = field(default_factory=Meta)
    resources: Mapping[type, object] = field(default_factory=dict)

    def get(self, type_: str) -> object:
        return self.plugins.get(type_)

    def by_type(self, type_: str) -> dict[str, Plugin]:
        return self.plugins.by_type(type_)

    def instances(self, type_: str, cls: type[T]) -> dict[str, T]:
        """The initialised plugins of ``type_`` whose instance is a ``cls``, by id
        (containerd's ``GetByType`` with the interface assertion its callers make)."""
        out: dict[str, T] = {}
        for id_, p in self.plugins.by_type(type_).items():
            if p.error is None and isinstance(p.instance, cls):
                out[id_] = p.instance
            elif p.error is None:
                log.warning("plugin %s is not a %s; ignored", p.registration.uri, cls.__name__)
        return out

    def resource(self, cls: type[T]) -> T:
        """The daemon's object of type ``cls``; NotFound when this daemon has none."""
        value = self.resources.get(cls)
        if not isinstance(value, cls):
            raise NotFound(f"daemon resource {cls.__name__} is not available")
        return value

    def optional(self, cls: type[T]) -> T | None:
        value = self.resources.get(cls)
        return value if isinstance(value, cls) else None


class Registry:
    """The registrations a daemon knows, in registration order."""

    def __init__(self, registrations: Iterable[Registration] = ()) -> None:
        self._regs: list[Registration] = []
        for r in registrations:
            self.register(r)

    def register(self, r: Registration) -> None:
        if not r.type:
            raise RegistrationError("plugin: no type")
        if not r.id:
            raise RegistrationError(f"plugin {r.type}: no id")
        if any(x.uri == r.uri for x in self._regs):
            raise RegistrationError(f"{r.uri}: plugin: id already registered")
        if ANY in r.requires and len(r.requires) != 1:
            raise RegistrationError(f"{r.uri}: invalid requires ('*' must stand alone)")
        self._regs.append(r)

    def all(self) -> list[Registration]:
        return list(self._regs)

    def find(self, uri: str) -> Registration | None:
        return next((r for r in self._regs if r.uri == uri), None)

    def graph(self, disabled: Iterable[str] = ()) -> list[Registration]:
        """Enabled registrations ordered so requirements come first (depth first)."""
        off = set(disabled)
        enabled = [r for r in self._regs if r.uri not in off]
        ordered: list[Registration] = []
        done: set[str] = set()
        visiting: list[str] = []

        def deps(r: Registration) -> list[Registration]:
            return [
                d
                for t in r.requires
                for d in enabled
                if d.uri != r.uri and (t == ANY or d.type == t)
            ]

        def visit(r: Registration) -> None:
            if r.uri in done:
                return
            if r.uri in visiting:
                cycle = [*visiting[visiting.index(r.uri) :], r.uri]
                raise RegistrationError("plugin dependency cycle: " + " -> ".join(cycle))
            visiting.append(r.uri)
            for d in deps(r):
                visit(d)
            visiting.pop()
            done.add(r.uri)
            ordered.append(r)

        for r in enabled:
            visit(r)
        return ordered


class RequiredPluginError(RuntimeError):
    """A plugin named in required_plugins is missing or failed.

    ``plugins`` holds what was initialised up to then, for the caller to close.
    """

    def __init__(self, message: str, plugins: PluginSet | None = None) -> None:
        super().__init__(message)
        self.plugins = plugins if plugins is not None else PluginSet()


ContextFactory = Callable[[Registration, PluginSet], InitContext]


async def load(
    ordered: Sequence[Registration],
    make_context: ContextFactory,
    required: Iterable[str] = (),
) -> PluginSet:
    """Initialise ``ordered`` into a PluginSet.

    Errors are kept on each Plugin; a failed or skipped required plugin, or
    one that is not in the graph at all, raises RequiredPluginError.
    ``make_context`` raising (e.g. a bad config section) stops the load.
    """
    plugins = PluginSet()
    missing = set(required)
    for reg in ordered:
        ic = make_context(reg, plugins)
        log.info("loading plugin %s", reg.uri)
        p = Plugin(reg, ic.meta, ic.config)
        try:
            p.instance = await reg.init(ic)
        except SkipPlugin as e:
            p.error = e
            log.info("skip loading plugin %s: %s", reg.uri, e)
        except Exception as e:
            p.error = e
            log.warning(
                "failed to load plugin %s: %s", reg.uri, e, exc_info=log.isEnabledFor(logging.DEBUG)
            )
        plugins.add(p)
        if reg.uri in missing:
            if p.error is not None:
                raise RequiredPluginError(f"load required plugin {reg.uri}: {p.error}", plugins)
            missing.discard(reg.uri)
    if missing:
        raise RequiredPluginError(f"required plugin {sorted(missing)} not included", plugins)
    return plugins
