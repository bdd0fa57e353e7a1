"""The daemon's configuration: containerd's TOML (version 2), read in two steps.

``parse`` reads the file and its ``imports`` (containerd's merge rules:
scalars override when set, lists append, ``plugins``/``proxy_plugins``/
``timeouts`` sections replace by key), checking every key's type against the
schema below so that errors name the file the value came from.  ``resolve``
applies command-line overrides, fills in derived defaults (socket addresses
under ``state``) and validates what needs the whole picture.

Plugin sections (``[plugins."<type>.<id>"]``) stay raw here: each plugin
decodes its own section into its frozen dataclass when the registry loads it
(``PluginSection.decode``), as containerd's ``Config.Decode`` does.

Versions: 2 is the format (services/server/config/config.go at v1.6.20);
1 (plugins keyed by bare id) is migrated the way containerd 2 migrates it;
3 only renamed plugins berthd does not have; 4 moved the server settings into
``io.containerd.server.v1.*`` plugin sections, which are mapped back.
berthd's additions are optional keys in ``[proxy_plugins.NAME]``: ``command``
(argv the daemon starts and supervises), ``env`` and ``metrics_address``.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from api.errdefs import InvalidArgument
from api.goduration import parse_duration
from daemon.tomlcodec import INTERNAL, RAW, ConfigError, decode, dumps, encode, key_path

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_CONFIG_PATH = "/etc/berthd/config.toml"
DEFAULT_ROOT = "/var/lib/berthd"
DEFAULT_STATE = "/run/berthd"
DEFAULT_MAX_MESSAGE_SIZE = 16 << 20
LATEST_VERSION = 4
LOG_LEVELS = ("trace", "debug", "info", "warn", "warning", "error", "fatal", "panic")
METRICS_AUTO = "auto"

# Short proxy types accepted beside the full plugin type strings.
PROXY_TYPES = {
    "content": "io.containerd.content.v1",
    "snapshot": "io.containerd.snapshotter.v1",
    "diff": "io.containerd.differ.v1",
}


@dataclass(frozen=True)
class GRPCConfig:
    address: str = ""  # empty: <state>/berthd.sock
    tcp_address: str = ""
    tcp_tls_ca: str = ""
    tcp_tls_cert: str = ""
    tcp_tls_key: str = ""
    tcp_tls_common_name: str = ""
    uid: int = 0
    gid: int = 0
    max_recv_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_send_message_size: int = DEFAULT_MAX_MESSAGE_SIZE


@dataclass(frozen=True)
class TTRPCConfig:
    address: str = ""  # empty: the gRPC address + ".ttrpc"
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class DebugConfig:
    address: str = ""
    uid: int = 0
    gid: int = 0
    level: str = ""
    format: str = ""
    log_trace_id: bool = False


@dataclass(frozen=True)
class MetricsConfig:
    address: str = ""  # HOST:PORT serving /v1/metrics; empty: off
    grpc_histogram: bool = False


@dataclass(frozen=True)
class CgroupConfig:
    path: str = ""


@dataclass(frozen=True)
class StreamProcessor:
    accepts: tuple[str, ...] = ()
    returns: str = ""
    path: str = ""
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProxyPluginConfig:
    type: str = ""  # content | snapshot | diff, or the full plugin type
    address: str = ""
    platform: str = ""
    exports: Mapping[str, str] = field(default_factory=dict)
    capabilities: tuple[str, ...] = ()
    # berthd additions
    command: tuple[str, ...] = ()  # started and supervised by the daemon when set
    env: Mapping[str, str] = field(default_factory=dict)
    metrics_address: str = ""  # HOST:PORT of the plugin's /v1/metrics, or "auto"
    source: str = field(default="", metadata={INTERNAL: True}, compare=False)

    @property
    def plugin_type(self) -> str:
        return PROXY_TYPES.get(self.type, self.type)


@dataclass(frozen=True)
class PluginSection:
    """One ``[plugins."<uri>"]`` table, kept raw until its plugin decodes it."""

    data: Mapping[str, Any]
    source: str = field(compare=False)

    def decode(self, cls: type[T], uri: str) -> T:
        return decode(cls, self.data, self.source, key_path("plugins", uri))


@dataclass(frozen=True)
class Config:
    version: int = 2
    root: str = DEFAULT_ROOT
    state: str = DEFAULT_STATE
    temp: str = ""
    plugin_dir: str = ""
    grpc: GRPCConfig = GRPCConfig()
    ttrpc: TTRPCConfig = TTRPCConfig()
    debug: DebugConfig = DebugConfig()
    metrics: MetricsConfig = MetricsConfig()
    disabled_plugins: tuple[str, ...] = ()
    required_plugins: tuple[str, ...] = ()
    oom_score: int = 0
    cgroup: CgroupConfig = CgroupConfig()
    imports: tuple[str, ...] = ()
    timeouts: Mapping[str, str] = field(default_factory=dict)
    stream_processors: Mapping[str, StreamProcessor] = field(default_factory=dict)
    proxy_plugins: Mapping[str, ProxyPluginConfig] = field(default_factory=dict)
    plugins: Mapping[str, PluginSection] = field(default_factory=dict, metadata={RAW: True})
    source: str = field(default="", metadata={INTERNAL: True}, compare=False)

    def plugin_section(self, uri: str) -> PluginSection | None:
        return self.plugins.get(uri)


@dataclass(frozen=True)
class Overrides:
    """Command-line values that win over the file."""

    root: str | None = None
    state: str | None = None
    address: str | None = None
    log_level: str | None = None
    metrics_address: str | None = None


@dataclass(frozen=True)
class RawConfig:
    """Step one's result: the merged tables, every value already type-checked."""

    data: Mapping[str, Any]
    source: str = field(compare=False)
    files: tuple[str, ...]


# --- step one: parse ---------------------------------------------------------


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, "", f"invalid TOML: {e}") from None


# containerd 2's migration of version-1 plugin ids (cmd/containerd/server/config).
_V1_CORE = {
    "cri": "io.containerd.grpc.v1.cri",
    "cgroups": "io.containerd.monitor.v1.cgroups",
    "linux": "io.containerd.runtime.v1.linux",
    "scheduler": "io.containerd.gc.v1.scheduler",
    "bolt": "io.containerd.metadata.v1.bolt",
    "task": "io.containerd.runtime.v2.task",
    "opt": "io.containerd.internal.v1.opt",
    "restart": "io.containerd.internal.v1.restart",
    "tracing": "io.containerd.internal.v1.tracing",
    "otlp": "io.containerd.tracing.processor.v1.otlp",
    "aufs": "io.containerd.snapshotter.v1.aufs",
    "btrfs": "io.containerd.snapshotter.v1.btrfs",
    "devmapper": "io.containerd.snapshotter.v1.devmapper",
    "native": "io.containerd.snapshotter.v1.native",
    "overlayfs": "io.containerd.snapshotter.v1.overlayfs",
    "zfs": "io.containerd.snapshotter.v1.zfs",
}


def _v1_uri(name: str) -> str:
    if "." in name:
        return name
    if name in _V1_CORE:
        return _V1_CORE[name]
    if name.endswith("-service"):
        return "io.containerd.service.v1." + name
    return "io.containerd.grpc.v1." + name


# Version 4 moved the server settings into these plugin sections; map them
# back to the version-2 tables: section -> (table, {plugin key: table key}).
_V4_SERVER = {
    "io.containerd.server.v1.grpc": (
        "grpc",
        {k: k for k in ("address", "uid", "gid", "max_recv_message_size", "max_send_message_size")},
    ),
    "io.containerd.server.v1.grpc-tcp": (
        "grpc",
        {
            "address": "tcp_address",
            "tls_ca": "tcp_tls_ca",
            "tls_cert": "tcp_tls_cert",
            "tls_key": "tcp_tls_key",
            "tls_common_name": "tcp_tls_common_name",
        },
    ),
    "io.containerd.server.v1.ttrpc": ("ttrpc", {"address": "address", "uid": "uid", "gid": "gid"}),
    "io.containerd.server.v1.debug": ("debug", {"address": "address", "uid": "uid", "gid": "gid"}),
    "io.containerd.server.v1.metrics": ("metrics", {"address": "address"}),
    "io.containerd.metrics.v1.grpc-prometheus": ("metrics", {"grpc_histogram": "grpc_histogram"}),
}


def _normalize(doc: dict[str, Any], source: str, default_version: int) -> dict[str, Any]:
    """One file's tables in version-2 shape, type-checked (raises ConfigError)."""
    version = doc.get("version", default_version)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ConfigError(source, "version", "expected an integer")
    if version == 0:
        version = 1
    if not 1 <= version <= LATEST_VERSION:
        raise ConfigError(source, "version", f"unsupported config version {version}")
    doc = dict(doc)
    if version == 1:
        log.warning("%s: config version 1 is deprecated, please switch to version 2", source)
        plugins = doc.get("plugins")
        if isinstance(plugins, dict):
            doc["plugins"] = {_v1_uri(k): v for k, v in plugins.items()}
        for key in ("disabled_plugins", "required_plugins"):
            if isinstance(doc.get(key), list):
                doc[key] = [_v1_uri(p) if isinstance(p, str) else p for p in doc[key]]
    plugins = doc.get("plugins")
    if isinstance(plugins, dict):
        plugins = dict(plugins)
        for uri, (table, keys) in _V4_SERVER.items():
            section = plugins.pop(uri, None)
            if section is None:
                continue
            where = key_path("plugins", uri)
            if not isinstance(section, dict):
                raise ConfigError(source, where, "expected a table")
            target = dict(doc.get(table) or {})
            for k, v in section.items():
                if k in keys:
                    target[keys[k]] = v
                else:
                    log.warning("%s: unknown key %s (ignored)", source, key_path(where, k))
            doc[table] = target
        doc["plugins"] = plugins
    doc["version"] = max(version, 2)
    # Type-check everything except the raw plugin sections, naming this file.
    checked = decode(Config, doc, source)
    for name, proxy in checked.proxy_plugins.items():
        if proxy.command and not all(proxy.command):
            raise ConfigError(
                source, key_path(key_path("proxy_plugins", name), "command"), "empty argument"
            )
    sections = doc.get("plugins", {})
    if not isinstance(sections, dict):
        raise ConfigError(source, "plugins", "expected a table")
    wrapped: dict[str, PluginSection] = {}
    for uri, body in sections.items():
        if not isinstance(body, dict):
            raise ConfigError(source, key_path("plugins", uri), "expected a table")
        wrapped[uri] = PluginSection(body, source)
    doc["plugins"] = wrapped
    proxies = doc.get("proxy_plugins") or {}
    doc["proxy_plugins"] = {name: {**body, "__source__": source} for name, body in proxies.items()}
    return doc


_REPLACE_BY_KEY = ("plugins", "proxy_plugins", "timeouts", "stream_processors")
_APPEND = ("disabled_plugins", "required_plugins", "imports")


def _empty(v: object) -> bool:
    return v in ("", 0, False, None) or v == [] or v == {}


def _merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    """containerd's mergeConfig: set values override, lists append, sections replace."""
    for key, value in new.items():
        if key in _REPLACE_BY_KEY:
            into.setdefault(key, {}).update(value)
        elif key in _APPEND:
            into[key] = list(into.get(key, [])) + list(value)
        elif isinstance(value, dict):
            table = into.setdefault(key, {})
            for k, v in value.items():
                if not _empty(v):
                    table[k] = v
        elif not _empty(value):
            into[key] = value


def _resolve_imports(parent: str, imports: Sequence[str]) -> list[str]:
    out: list[str] = []
    for path in imports:
        if "*" in path:
            out.extend(sorted(glob.glob(path)))
            continue
        path = os.path.normpath(path)
        if not os.path.isabs(path):
            path = os.path.join(os.path.dirname(parent), path)
        out.append(path)
    return out


def parse(path: str) -> RawConfig:
    """Read ``path`` and the files it imports; FileNotFoundError when ``path`` is absent."""
    if not os.path.exists(path):
        raise FileNotFoundError(2, "config file not found", path)
    merged: dict[str, Any] = {}
    loaded: list[str] = []
    pending = [path]
    main_version: int | None = None
    while pending:
        current, pending = pending[0], pending[1:]
        if current in loaded:
            continue
        doc = _normalize(_read(current), current, main_version or 1)
        if main_version is None:
            main_version = doc["version"]
        imports = list(doc.get("imports", []))
        _merge(merged, doc)
        loaded.append(current)
        pending.extend(_resolve_imports(current, imports))
    merged["imports"] = loaded[1:]
    return RawConfig(merged, path, tuple(loaded))


def parse_string(text: str, source: str) -> RawConfig:
    """Like ``parse`` for TOML text (``imports`` are not followed)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(source, "", f"invalid TOML: {e}") from None
    return RawConfig(_normalize(doc, source, 1), source, ())


# --- step two: resolve --------------------------------------------------------

_HOSTPORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[^:\[\]]*):(\d{1,5})$")


def _valid_duration(s: str) -> bool:
    # Go's time.ParseDuration grammar, which containerd's [timeouts] use.
    try:
        parse_duration(s)
    except InvalidArgument:
        return False
    return True


def _plugin_uri_ok(uri: str) -> bool:
    return len(uri.split(".")) >= 4


def _check(cfg: Config) -> None:
    src = cfg.source
    if not cfg.root:
        raise ConfigError(src, "root", "root must be specified")
    if not cfg.state:
        raise ConfigError(src, "state", "state must be specified")
    if os.path.abspath(cfg.root) == os.path.abspath(cfg.state):
        raise ConfigError(src, "state", "root and state must be different paths")
    for key in ("disabled_plugins", "required_plugins"):
        for i, uri in enumerate(getattr(cfg, key)):
            if not _plugin_uri_ok(uri):
                raise ConfigError(
                    src, f"{key}[{i}]", f"invalid plugin URI {uri!r}, expect io.containerd.x.vx"
                )
    for uri, section in cfg.plugins.items():
        if not _plugin_uri_ok(uri):
            raise ConfigError(
                section.source,
                key_path("plugins", uri),
                f"invalid plugin key URI {uri!r}, expect io.containerd.x.vx",
            )
    if cfg.debug.level and cfg.debug.level not in LOG_LEVELS:
        raise ConfigError(
            src,
            "debug.level",
            f"unknown level {cfg.debug.level!r} (one of {', '.join(LOG_LEVELS)})",
        )
    if cfg.debug.format not in ("", "text", "json"):
        raise ConfigError(src, "debug.format", f"unknown format {cfg.debug.format!r}")
    for key in ("max_recv_message_size", "max_send_message_size"):
        if getattr(cfg.grpc, key) <= 0:
            raise ConfigError(src, f"grpc.{key}", "must be positive")
    if cfg.metrics.address and not _HOSTPORT.match(cfg.metrics.address):
        raise ConfigError(src, "metrics.address", "expected HOST:PORT")
    for name, value in cfg.timeouts.items():
        if not _valid_duration(value):
            raise ConfigError(src, key_path("timeouts", name), f"invalid duration {value!r}")
    for name, p in cfg.proxy_plugins.items():
        where = key_path("proxy_plugins", name)
        if p.metrics_address == METRICS_AUTO:
            if not p.command:
                raise ConfigError(
                    p.source, f"{where}.metrics_address", '"auto" needs a command to pass it to'
                )
        elif p.metrics_address and not _HOSTPORT.match(p.metrics_address):
            raise ConfigError(p.source, f"{where}.metrics_address", 'expected HOST:PORT or "auto"')
    ignored: dict[str, object] = {
        "grpc.tcp_address": cfg.grpc.tcp_address,
        "debug.address": cfg.debug.address,
        "cgroup.path": cfg.cgroup.path,
        "oom_score": cfg.oom_score,
        "plugin_dir": cfg.plugin_dir,
        "stream_processors": dict(cfg.stream_processors),
    }
    for key, setting in ignored.items():
        if setting:
            log.warning("%s: %s is not supported by berthd (ignored)", src, key)


def resolve(raw: RawConfig, overrides: Overrides | None = None) -> Config:
    """The effective config: ``raw`` plus overrides and derived defaults."""
    data = dict(raw.data)
    proxies = {}
    for name, body in data.pop("proxy_plugins", {}).items():
        body = dict(body)
        source = body.pop("__source__", raw.source)
        proxies[name] = dataclasses.replace(
            decode(ProxyPluginConfig, body, source, warn=False), source=source
        )
    plugins = data.pop("plugins", {})
    cfg = decode(Config, data, raw.source, warn=False)
    cfg = dataclasses.replace(cfg, proxy_plugins=proxies, plugins=plugins, source=raw.source)
    o = overrides or Overrides()
    if o.root:
        cfg = dataclasses.replace(cfg, root=o.root)
    if o.state:
        cfg = dataclasses.replace(cfg, state=o.state)
    if o.address:
        cfg = dataclasses.replace(cfg, grpc=dataclasses.replace(cfg.grpc, address=o.address))
    if o.log_level:
        cfg = dataclasses.replace(cfg, debug=dataclasses.replace(cfg.debug, level=o.log_level))
    if o.metrics_address is not None:
        metrics = dataclasses.replace(cfg.metrics, address=o.metrics_address)
        cfg = dataclasses.replace(cfg, metrics=metrics)
    if not cfg.grpc.address:
        grpc = dataclasses.replace(cfg.grpc, address=os.path.join(cfg.state, "berthd.sock"))
        cfg = dataclasses.replace(cfg, grpc=grpc)
    if not cfg.ttrpc.address:
        ttrpc = dataclasses.replace(cfg.ttrpc, address=cfg.grpc.address + ".ttrpc")
        cfg = dataclasses.replace(cfg, ttrpc=ttrpc)
    _check(cfg)
    return cfg


def load(path: str, overrides: Overrides | None = None) -> Config:
    return resolve(parse(path), overrides)


# --- writing it back ------------------------------------------------------------


def to_toml(cfg: Config, plugin_configs: Mapping[str, object]) -> str:
    """``cfg`` as a version-2 file (``berthd config dump``); parses back to the same Config.

    ``plugin_configs`` are the registered plugins' effective configs by URI;
    sections no registered plugin claims are written back as they were read.
    """
    doc = encode(cfg)
    doc["version"] = 2
    plugins = {uri: encode(obj) for uri, obj in plugin_configs.items()}
    for uri, section in cfg.plugins.items():
        plugins.setdefault(uri, dict(section.data))
    doc["plugins"] = plugins
    proxies: dict[str, Any] = {}
    for name, p in cfg.proxy_plugins.items():
        entry: dict[str, Any] = {
            "type": p.type,
            "address": p.address,
            "platform": p.platform,
            "capabilities": list(p.capabilities),
        }
        if p.exports:
            entry["exports"] = dict(p.exports)
        if p.command:
            entry["command"] = list(p.command)
        if p.env:
            entry["env"] = dict(p.env)
        if p.metrics_address:
            entry["metrics_address"] = p.metrics_address
        proxies[name] = entry
    doc["proxy_plugins"] = proxies
    return dumps(doc)
