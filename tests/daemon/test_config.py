"""The daemon config: containerd's TOML read in two steps, errors naming file and key."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import tomllib
from pathlib import Path

import pytest

from daemon import config as configuration
from daemon import embedded
from daemon.config import Config, Overrides, ProxyPluginConfig
from daemon.diffservice import DiffServiceConfig
from daemon.server import builtin_registrations, plugin_configs
from daemon.tomlcodec import ConfigError
from tests.support import REPO, need_binary

DEPLOY = REPO / "deploy" / "config"


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def load_text(tmp_path: Path, text: str, overrides: Overrides | None = None) -> Config:
    return configuration.load(write(tmp_path / "config.toml", text), overrides)


def test_defaults(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, "version = 2\n")
    assert cfg.version == 2
    assert cfg.root == "/var/lib/berthd"
    assert cfg.state == "/run/berthd"
    assert cfg.grpc.address == "/run/berthd/berthd.sock"
    assert cfg.ttrpc.address == "/run/berthd/berthd.sock.ttrpc"
    assert cfg.grpc.max_recv_message_size == cfg.grpc.max_send_message_size == 16 << 20
    assert (cfg.grpc.uid, cfg.grpc.gid) == (0, 0)
    assert cfg.metrics.address == ""
    assert cfg.debug.level == ""
    assert cfg.disabled_plugins == cfg.required_plugins == ()
    assert cfg.proxy_plugins == {} and cfg.plugins == {}
    assert cfg.source == str(tmp_path / "config.toml")


def test_derived_addresses_follow_state(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, 'version = 2\nstate = "/srv/run"\n')
    assert cfg.grpc.address == "/srv/run/berthd.sock"
    assert cfg.ttrpc.address == "/srv/run/berthd.sock.ttrpc"


EVERY_KEY = """
version = 2
root = "/srv/root"
state = "/srv/state"
temp = "/srv/tmp"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
required_plugins = ["io.containerd.grpc.v1.version"]

[grpc]
  address = "/srv/state/d.sock"
  uid = 1000
  gid = 1001
  max_recv_message_size = 1048576
  max_send_message_size = 2097152

[ttrpc]
  address = "/srv/state/d.ttrpc"
  uid = 5
  gid = 6

[debug]
  level = "debug"
  format = "json"

[metrics]
  address = "127.0.0.1:1338"
  grpc_histogram = true

[timeouts]
  "io.containerd.timeout.shim.cleanup" = "5s"

[plugins."io.containerd.service.v1.diff-service"]
  default = ["b", "a"]

[proxy_plugins.snap]
  type = "snapshot"
  address = "/srv/state/snap.sock"
  platform = "linux/arm64/v8"
  exports = { root = "/srv/snap" }
  capabilities = ["remap-ids"]
  command = ["berthd-snapshotter", "--address", "/srv/state/snap.sock"]
  env = { BERTHD_X = "1" }
  metrics_address = "127.0.0.1:1340"

[proxy_plugins.cs]
  type = "io.containerd.content.v1"
  address = "/srv/state/cs.sock"
"""


def test_every_key(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, EVERY_KEY)
    assert (cfg.root, cfg.state, cfg.temp) == ("/srv/root", "/srv/state", "/srv/tmp")
    assert cfg.disabled_plugins == ("io.containerd.grpc.v1.cri",)
    assert cfg.required_plugins == ("io.containerd.grpc.v1.version",)
    assert cfg.grpc == configuration.GRPCConfig(
        address="/srv/state/d.sock",
        uid=1000,
        gid=1001,
        max_recv_message_size=1 << 20,
        max_send_message_size=2 << 20,
    )
    assert cfg.ttrpc == configuration.TTRPCConfig("/srv/state/d.ttrpc", 5, 6)
    assert (cfg.debug.level, cfg.debug.format) == ("debug", "json")
    assert cfg.metrics == configuration.MetricsConfig("127.0.0.1:1338", True)
    assert cfg.timeouts == {"io.containerd.timeout.shim.cleanup": "5s"}
    section = cfg.plugin_section("io.containerd.service.v1.diff-service")
    assert section is not None
    assert section.decode(DiffServiceConfig, "x") == DiffServiceConfig(default=("b", "a"))
    snap = cfg.proxy_plugins["snap"]
    assert snap == ProxyPluginConfig(
        type="snapshot",
        address="/srv/state/snap.sock",
        platform="linux/arm64/v8",
        exports={"root": "/srv/snap"},
        capabilities=("remap-ids",),
        command=("berthd-snapshotter", "--address", "/srv/state/snap.sock"),
        env={"BERTHD_X": "1"},
        metrics_address="127.0.0.1:1340",
    )
    assert snap.plugin_type == "io.containerd.snapshotter.v1"
    assert cfg.proxy_plugins["cs"].plugin_type == "io.containerd.content.v1"


def test_overrides_win(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        EVERY_KEY,
        Overrides(
            root="/o/root",
            state="/o/state",
            address="/o/d.sock",
            log_level="warn",
            metrics_address="127.0.0.1:9",
        ),
    )
    assert (cfg.root, cfg.state, cfg.grpc.address) == ("/o/root", "/o/state", "/o/d.sock")
    assert cfg.debug.level == "warn"
    assert cfg.metrics.address == "127.0.0.1:9"
    # Explicitly configured addresses are not moved by a new state dir.
    assert cfg.ttrpc.address == "/srv/state/d.ttrpc"


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ('version = 2\n[grpc]\nuid = "root"\n', "grpc.uid", "expected an integer, got string"),
        ("version = 2\nroot = 5\n", "root", "expected a string"),
        ('version = 2\ndisabled_plugins = "x"\n', "disabled_plugins", "expected an array"),
        ("version = 2\ndisabled_plugins = [1]\n", "disabled_plugins[0]", "expected a string"),
        ('version = 2\ndisabled_plugins = ["cri"]\n', "disabled_plugins[0]", "invalid plugin URI"),
        ('version = 2\nrequired_plugins = ["a.b"]\n', "required_plugins[0]", "invalid plugin URI"),
        ("version = 9\n", "version", "unsupported config version 9"),
        ('version = 2\n[debug]\nlevel = "loud"\n', "debug.level", "unknown level 'loud'"),
        ('version = 2\n[metrics]\naddress = "nope"\n', "metrics.address", "HOST:PORT"),
        ('version = 2\n[timeouts]\nx = "5 sec"\n', "timeouts.x", "invalid duration"),
        ('version = 2\nroot = "/a"\nstate = "/a"\n', "state", "must be different"),
        (
            "version = 2\n[grpc]\nmax_recv_message_size = -1\n",
            "grpc.max_recv_message_size",
            "positive",
        ),
        ('version = 2\n[proxy_plugins.p]\ncommand = "x"\n', "proxy_plugins.p.command", "array"),
        ('version = 2\n[proxy_plugins.p]\ncommand = [""]\n', "proxy_plugins.p.command", "empty"),
        (
            'version = 2\n[proxy_plugins.p]\naddress = "/a"\nmetrics_address = "auto"\n',
            "proxy_plugins.p.metrics_address",
            "needs a command",
        ),
        (
            "version = 2\n[proxy_plugins.p]\nexports = { a = 1 }\n",
            "proxy_plugins.p.exports.a",
            "expected a string",
        ),
        ('version = 2\n[plugins]\n"not.a.uri" = {}\n', 'plugins."not.a.uri"', "invalid plugin key"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError) as info:
        configuration.load(path)
    assert info.value.source == path
    assert info.value.key == key
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"{path}: {key}: ")


def test_invalid_toml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.toml", "version = 2\n[grpc\naddress = 1\n")
    with pytest.raises(ConfigError) as info:
        configuration.load(path)
    assert str(info.value).startswith(f"{path}: invalid TOML")
    assert "line 2" in str(info.value)


def test_plugin_section_error_names_file_and_key(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path, 'version = 2\n[plugins."io.containerd.service.v1.diff-service"]\ndefault = "x"\n'
    )
    with pytest.raises(ConfigError) as info:
        plugin_configs(cfg, builtin_registrations())
    assert str(info.value) == (
        f'{tmp_path / "config.toml"}: plugins."io.containerd.service.v1.diff-service".default:'
        " expected an array, got string"
    )


def test_unknown_keys_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    cfg = load_text(
        tmp_path,
        'version = 2\nfrobnicate = 1\n[grpc]\nadress = "/x"\n[proxy_plugins.p]\ntpye = "x"\n',
    )
    assert cfg.grpc.address == "/run/berthd/berthd.sock"
    text = caplog.text
    path = str(tmp_path / "config.toml")
    for key in ("frobnicate", "grpc.adress", "proxy_plugins.p.tpye"):
        assert f"{path}: unknown key {key} (ignored)" in text


def test_imports_merge_like_containerd(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    write(
        tmp_path / "conf.d" / "a.toml",
        'version = 2\nstate = "/imported/state"\ndisabled_plugins = ["io.containerd.x.v1.b"]\n'
        '[proxy_plugins.p]\ntype = "content"\naddress = "/imported.sock"\n'
        '[plugins."io.containerd.service.v1.diff-service"]\ndefault = ["imported"]\n',
    )
    main = write(
        tmp_path / "main.toml",
        'version = 2\nimports = ["conf.d/a.toml"]\nroot = "/main/root"\nstate = "/main/state"\n'
        'disabled_plugins = ["io.containerd.x.v1.a"]\n'
        '[proxy_plugins.p]\ntype = "snapshot"\naddress = "/main.sock"\nplatform = "linux"\n'
        '[proxy_plugins.q]\ntype = "diff"\naddress = "/q.sock"\n',
    )
    cfg = configuration.load(main)
    assert cfg.root == "/main/root"
    assert cfg.state == "/imported/state"  # later files override set values
    assert cfg.disabled_plugins == ("io.containerd.x.v1.a", "io.containerd.x.v1.b")
    # sections are replaced by key, not merged field by field
    assert cfg.proxy_plugins["p"] == ProxyPluginConfig(type="content", address="/imported.sock")
    assert cfg.proxy_plugins["q"].address == "/q.sock"
    assert cfg.imports == (str(tmp_path / "conf.d" / "a.toml"),)
    section = cfg.plugin_section("io.containerd.service.v1.diff-service")
    assert section is not None and section.source == str(tmp_path / "conf.d" / "a.toml")


def test_error_in_imported_file_names_that_file(tmp_path: Path) -> None:
    bad = write(tmp_path / "b.toml", "version = 2\n[grpc]\ngid = true\n")
    main = write(tmp_path / "main.toml", f'version = 2\nimports = ["{bad}"]\n')
    with pytest.raises(ConfigError) as info:
        configuration.load(main)
    assert str(info.value) == f"{bad}: grpc.gid: expected an integer, got boolean"


def test_version_1_plugin_ids_are_migrated(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        'disabled_plugins = ["cri", "overlayfs"]\n[plugins.diff-service]\ndefault = ["x"]\n',
    )
    assert cfg.disabled_plugins == (
        "io.containerd.grpc.v1.cri",
        "io.containerd.snapshotter.v1.overlayfs",
    )
    assert "io.containerd.service.v1.diff-service" in cfg.plugins


def test_version_3_reads_as_version_2(tmp_path: Path) -> None:
    v2 = load_text(tmp_path, EVERY_KEY)
    v3 = load_text(tmp_path, EVERY_KEY.replace("version = 2", "version = 3"))
    assert v3.version == 3
    assert dataclasses.replace(v3, version=2) == v2


def test_version_4_server_sections_map_back(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        "version = 4\n"
        '[plugins."io.containerd.server.v1.grpc"]\naddress = "/v4/d.sock"\nuid = 7\n'
        '[plugins."io.containerd.server.v1.ttrpc"]\naddress = "/v4/d.ttrpc"\n'
        '[plugins."io.containerd.server.v1.metrics"]\naddress = "127.0.0.1:7"\n',
    )
    assert (cfg.grpc.address, cfg.grpc.uid) == ("/v4/d.sock", 7)
    assert cfg.ttrpc.address == "/v4/d.ttrpc"
    assert cfg.metrics.address == "127.0.0.1:7"
    assert cfg.plugins == {}


def test_embedded_default_is_the_printed_default(tmp_path: Path) -> None:
    text = embedded.default_toml("/r", "/s")
    printed = configuration.resolve(configuration.parse_string(text, "printed"))
    default = embedded.embedded_default(Overrides(root="/r", state="/s"))
    assert printed == default
    assert default.source == embedded.EMBEDDED_SOURCE
    proxies = default.proxy_plugins
    assert set(proxies) == {"content", "overlayfs", "native", "walking"}
    assert all(p.command for name, p in proxies.items() if name != "native")
    assert proxies["content"].address == "/s/content.sock"
    assert "/r/io.containerd.content.v1.content" in proxies["content"].command
    # One snapshotter process serves both names on one socket, each under
    # containerd's root for it; the differ may mount under both roots.
    overlayfs, native = proxies["overlayfs"], proxies["native"]
    assert overlayfs.address == native.address == "/s/snapshotter.sock"
    assert native.command == () and native.metrics_address == ""
    command = overlayfs.command
    assert command[command.index("--root") + 1] == "/r"
    assert [command[i + 1] for i, a in enumerate(command) if a == "--backend"] == [
        "overlayfs",
        "native",
    ]
    differ = proxies["walking"].command
    assert [differ[i + 1] for i, a in enumerate(differ) if a == "--allowed-root"] == [
        "/r/io.containerd.snapshotter.v1.overlayfs",
        "/r/io.containerd.snapshotter.v1.native",
    ]


def test_deploy_embedded_example_is_current() -> None:
    assert (DEPLOY / "embedded.toml").read_text() == embedded.default_toml()


def test_dump_reads_back_to_the_same_config(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, EVERY_KEY)
    regs = builtin_registrations()
    dumped = configuration.to_toml(cfg, plugin_configs(cfg, regs))
    again = load_text(tmp_path, dumped)
    # The dump spells out every configurable plugin's effective section, so
    # compare what each plugin gets rather than which sections were written.
    assert plugin_configs(again, regs) == plugin_configs(cfg, regs)
    assert dataclasses.replace(again, plugins={}, source="") == dataclasses.replace(
        cfg, plugins={}, source=""
    )
    doc = tomllib.loads(dumped)
    assert doc["plugins"]["io.containerd.service.v1.diff-service"] == {"default": ["b", "a"]}


def test_dump_shows_plugin_defaults(tmp_path: Path) -> None:
    cfg = embedded.embedded_default()
    cfg = dataclasses.replace(cfg, plugins={})
    doc = tomllib.loads(configuration.to_toml(cfg, plugin_configs(cfg, builtin_registrations())))
    assert doc["plugins"]["io.containerd.service.v1.diff-service"] == {"default": []}


def test_deploy_examples_load() -> None:
    for name in ("units.toml", "containerd-proxy-plugins.toml", "embedded.toml"):
        cfg = configuration.load(str(DEPLOY / name))
        assert cfg.proxy_plugins


def _containerd_dump(path: Path) -> dict[str, object]:
    out = subprocess.run(
        ["containerd", "--config", str(path), "config", "dump"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return tomllib.loads(out.stdout)


@pytest.mark.containerd
def test_containerd_config_means_the_same(tmp_path: Path) -> None:
    """A file real containerd accepts, used unchanged: same proxies, same plugin switches."""
    need_binary("containerd")
    from tests.support.containerd import Containerd

    cd = Containerd(
        tmp_path,
        disabled_plugins=["io.containerd.snapshotter.v1.btrfs"],
        proxy_plugins={
            "berth": {"type": "snapshot", "address": "/run/berthd/snapshotter.sock"},
            "berth-content": {"type": "content", "address": "/run/berthd/content.sock"},
        },
    )
    for path in (
        write(tmp_path / "cd.toml", cd.toml),
        str(DEPLOY / "containerd-proxy-plugins.toml"),
    ):
        theirs = _containerd_dump(Path(path))
        ours = configuration.load(path)
        assert ours.root == theirs["root"] and ours.state == theirs["state"]
        assert ours.grpc.address == theirs["grpc"]["address"]  # type: ignore[index]
        assert list(ours.disabled_plugins) == theirs["disabled_plugins"]
        their_proxies = theirs["proxy_plugins"]
        assert isinstance(their_proxies, dict)
        assert set(ours.proxy_plugins) == set(their_proxies)
        for name, p in ours.proxy_plugins.items():
            assert p.type == their_proxies[name]["type"]
            assert p.address == their_proxies[name]["address"]


def test_embedded_default_follows_address_override() -> None:
    """--address moves the daemon socket, its ttrpc socket and the differ's content address."""
    cfg = embedded.embedded_default(Overrides(state="/s", address="/elsewhere/b.sock"))
    assert cfg.grpc.address == "/elsewhere/b.sock"
    assert cfg.ttrpc.address == "/elsewhere/b.sock.ttrpc"
    differ = cfg.proxy_plugins["walking"].command
    assert differ[differ.index("--content-address") + 1] == "/elsewhere/b.sock"
