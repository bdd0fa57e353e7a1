"""``berthd`` on the command line: config printing, start-up errors as one line."""

from __future__ import annotations

import dataclasses
import subprocess
import tomllib
from pathlib import Path

import pytest

from daemon import config as configuration
from daemon.server import builtin_registrations, plugin_configs
from tests.support import PYTHON, REPO, need_binary, short_tmpdir
from tests.support.berthd import Berthd


def berthd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "daemon.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


def test_config_default_prints_the_embedded_default() -> None:
    out = berthd("config", "default")
    assert out.returncode == 0, out.stderr
    assert out.stdout == (REPO / "deploy" / "config" / "embedded.toml").read_text()
    moved = berthd("--root", "/x/root", "config", "default", "--state", "/x/run")
    cfg = configuration.resolve(configuration.parse_string(moved.stdout, "printed"))
    assert (cfg.root, cfg.state, cfg.grpc.address) == ("/x/root", "/x/run", "/x/run/berthd.sock")


def test_config_dump_prints_the_effective_config(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        'version = 2\nroot = "/a"\n[proxy_plugins.p]\ntype = "content"\naddress = "/p.sock"\n'
    )
    out = berthd("--config", str(path), "--state", "/b", "config", "dump")
    assert out.returncode == 0, out.stderr
    doc = tomllib.loads(out.stdout)
    assert (doc["root"], doc["state"]) == ("/a", "/b")
    assert doc["grpc"]["address"] == "/b/berthd.sock"
    assert doc["proxy_plugins"]["p"]["address"] == "/p.sock"
    assert doc["plugins"]["io.containerd.service.v1.diff-service"] == {"default": []}
    dumped = tmp_path / "dumped.toml"
    dumped.write_text(out.stdout)
    again = configuration.load(str(dumped))
    original = configuration.load(str(path), configuration.Overrides(state="/b"))
    # the same config, with the plugins' defaults now written out
    assert dataclasses.replace(again, plugins={}) == original
    regs = builtin_registrations()
    assert plugin_configs(again, regs) == plugin_configs(original, regs)


def test_bad_config_is_one_line_naming_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('version = 2\n[grpc]\nuid = "daemon"\n')
    out = berthd("--config", str(path))
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        f"berthd: error: {path}: grpc.uid: expected an integer, got string"
    )
    assert "Traceback" not in out.stderr


def test_missing_explicit_config_is_an_error(tmp_path: Path) -> None:
    out = berthd("--config", str(tmp_path / "nope.toml"))
    assert out.returncode == 1
    assert "nope.toml" in out.stderr and "not found" in out.stderr


def test_failing_required_plugin_stops_the_start(tmp_path: Path) -> None:
    with short_tmpdir("br") as d:
        path = d / "c.toml"
        path.write_text(
            'version = 2\nrequired_plugins = ["io.containerd.differ.v1.bad"]\n'
            '[proxy_plugins.bad]\ntype = "diff"\n'
        )
        out = berthd("--config", str(path), "--root", str(d / "r"), "--state", str(d / "s"))
        assert out.returncode == 1
        assert out.stderr.strip().splitlines()[-1] == (
            "berthd: error: load required plugin io.containerd.differ.v1.bad: "
            f"{path}: proxy_plugins.bad: address is required: invalid argument"
        )
        assert not (d / "s" / "berthd.sock").exists()


@pytest.mark.containerd
def test_second_daemon_on_a_live_socket_refuses_to_start() -> None:
    need_binary("ctr")
    with short_tmpdir("bs") as d, Berthd(d, "version = 2\n") as first:
        out = berthd("--config", str(d / "config.toml"), "--root", str(d / "root"),
                     "--state", str(d / "run"))  # fmt: skip
        assert out.returncode == 1
        assert "another process is serving on this socket" in out.stderr
        assert "Server:" in first.ctr("version").stdout
