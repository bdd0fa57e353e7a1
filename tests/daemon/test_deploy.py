"""deploy/: the systemd units and the Prometheus scrape config are valid as shipped."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from daemon import config as configuration
from daemon.metadata.plugin import METADATA_URI, MetadataConfig
from daemon.server import builtin_registrations, plugin_configs
from tests.support import PYTHON, REPO, need_binary, short_tmpdir
from tests.support.berthd import BIN, Berthd, need_plugin
from tests.support.tls import make_pki

DEPLOY = REPO / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def test_units_are_notify_services() -> None:
    assert [u.name for u in UNITS] == [
        "berthd-content.service",
        "berthd-diff.service",
        "berthd-snapshotter.service",
        "berthd.service",
    ]
    for unit in UNITS:
        text = unit.read_text()
        assert "Type=notify" in text, unit
        exec_start = next(ln for ln in text.splitlines() if ln.startswith("ExecStart="))
        binary = exec_start.split("=", 1)[1].split()[0]
        assert Path(binary).name == unit.name.removesuffix(".service"), unit


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    need_binary("systemd-analyze")
    for unit in UNITS:
        # point ExecStart at this checkout's console scripts so the check can find them
        text = unit.read_text().replace("/usr/local/bin/", f"{BIN}/")
        (tmp_path / unit.name).write_text(text)
    out = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(tmp_path / u.name) for u in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [
        line
        for line in (out.stdout + out.stderr).splitlines()
        if str(tmp_path) in line or "berthd" in line
    ]
    assert out.returncode == 0 and not problems, out.stdout + out.stderr


@pytest.mark.promtool
def test_prometheus_config_is_valid() -> None:
    need_binary("promtool")
    promtool = shutil.which("promtool")
    assert promtool is not None
    out = subprocess.run(
        [promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.containerd
def test_daemon_reports_ready_and_stopping_to_systemd() -> None:
    """Type=notify: READY=1 once the daemon serves (never from its plugins), then STOPPING=1."""
    need_binary("ctr")
    need_plugin("services.content.main")
    with short_tmpdir("bn") as d:
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(d / "notify"))
        notify.settimeout(30)
        try:
            sock = f"{d}/p/c.sock"
            cfg = (
                f'version = 2\n[proxy_plugins.c]\ntype = "content"\naddress = "{sock}"\n'
                f'command = ["{PYTHON}", "-m", "services.content.main", "--root", "{d}/c",'
                f' "--address", "{sock}"]\n'
            )
            b = Berthd(d, cfg, env={"NOTIFY_SOCKET": str(d / "notify")})
            with b:
                assert notify.recv(4096) == b"READY=1"
                assert b.ctr("content", "ls").returncode == 0
            assert notify.recv(4096) == b"STOPPING=1"
            notify.settimeout(0.5)
            with pytest.raises(TimeoutError):
                notify.recv(4096)  # nothing from the supervised plugin, no second READY
        finally:
            notify.close()


def test_the_etcd_node_example_means_what_it_says(tmp_path: Path) -> None:
    """deploy/config/etcd-node.toml, with its TLS files and host names made
    real on this machine, is accepted as it stands (``berthd config dump``)."""
    pki = make_pki(tmp_path / "pki")
    text = (DEPLOY / "config" / "etcd-node.toml").read_text()
    for name, path in (
        ("ca.pem", pki.ca),
        ("node.pem", pki.client_cert),
        ("node-key.pem", pki.client_key),
    ):
        text = text.replace(f"/etc/berthd/etcd/{name}", str(path))
    for i in (1, 2, 3):
        text = text.replace(f"etcd-{i}.example.internal", "localhost")
    path = tmp_path / "config.toml"
    path.write_text(text)
    out = subprocess.run(
        [PYTHON, "-m", "daemon.cli", "--config", str(path), "config", "dump"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    cfg = configuration.load(str(path))
    meta = plugin_configs(cfg, builtin_registrations())[METADATA_URI]
    assert isinstance(meta, MetadataConfig)
    assert (meta.backend, meta.node, meta.prefix, len(meta.endpoints)) == (
        "etcd",
        "node-1",
        "/berthd",
        3,
    )
