"""The shim binary's start/delete commands and the start response."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from api import errdefs
from services.tasks import bundle as bundles
from services.tasks.command import BootstrapParams, ShimBinary, parse_start_response
from services.tasks.types import AnyValue


def test_bare_address_is_ttrpc() -> None:
    params = parse_start_response(b"unix:///run/containerd/s/abc\n")
    assert params == BootstrapParams(0, "unix:///run/containerd/s/abc", "ttrpc")
    assert params.encode() == b"unix:///run/containerd/s/abc"


@pytest.mark.parametrize("protocol", ["ttrpc", "grpc", "TTRPC"])
def test_bootstrap_params_v2(protocol: str) -> None:
    raw = json.dumps({"version": 2, "address": "unix:///x.sock", "protocol": protocol})
    params = parse_start_response(raw.encode())
    assert params == BootstrapParams(2, "unix:///x.sock", protocol.lower())
    assert parse_start_response(params.encode()) == params


def test_bootstrap_params_below_v2_are_a_bare_address() -> None:
    # containerd 1.7 treats anything below version 2 as a legacy address.
    raw = json.dumps({"version": 1, "address": "unix:///x.sock", "protocol": "ttrpc"})
    params = parse_start_response(raw.encode())
    assert params.protocol == "ttrpc"
    assert params.address == raw


def test_bootstrap_params_v3_are_not_implemented() -> None:
    raw = json.dumps({"version": 3, "address": "unix:///x.sock", "protocol": "ttrpc"})
    with pytest.raises(errdefs.NotImplemented, match=r"unsupported shim version \(3\)"):
        parse_start_response(raw.encode())


def test_empty_response() -> None:
    with pytest.raises(errdefs.InvalidArgument):
        parse_start_response(b"  \n")


def test_argv_and_environment() -> None:
    binary = ShimBinary(
        path="/usr/bin/containerd-shim-runc-v2",
        grpc_address="/run/b/berthd.sock",
        ttrpc_address="/run/b/berthd.sock.ttrpc",
        publish_binary="/usr/bin/berthd",
        sched_core=True,
    )
    assert binary.argv("ns1", ["-id", "t1", "start"]) == [
        "/usr/bin/containerd-shim-runc-v2",
        "-namespace",
        "ns1",
        "-address",
        "/run/b/berthd.sock",
        "-publish-binary",
        "/usr/bin/berthd",
        "-id",
        "t1",
        "start",
    ]
    env = binary.env("ns1")
    assert env["TTRPC_ADDRESS"] == "/run/b/berthd.sock.ttrpc"
    assert env["GRPC_ADDRESS"] == "/run/b/berthd.sock"
    assert env["NAMESPACE"] == "ns1"
    assert env["MAX_SHIM_VERSION"] == "2"
    assert env["GOMAXPROCS"] == "2"
    assert env["SCHED_CORE"] == "1"
    assert env["PATH"] == os.environ["PATH"]
    assert "SCHED_CORE" not in ShimBinary("/x", "a", "b", "c").env("ns1")


def _real_shim() -> str:
    path = shutil.which("containerd-shim-runc-v2")
    if path is None:
        pytest.skip("needs containerd-shim-runc-v2 (apt-get install containerd)")
    return path


async def test_failed_start_reports_the_shim_output(tmp_path: Path) -> None:
    binary = ShimBinary(_real_shim(), str(tmp_path / "g.sock"), str(tmp_path / "t.sock"), "/x")
    b = bundles.new_bundle(str(tmp_path / "root"), str(tmp_path / "state"), "ns1", "t1", b"{}")
    os.unlink(b.file("config.json"))
    with pytest.raises(errdefs.Unknown) as exc:
        await binary.start(b, AnyValue("containerd.runc.v1.Options", b""))
    assert "config.json" in str(exc.value)
    assert "exit status 1" in str(exc.value)


async def test_failed_delete_reports_the_shim_stderr(tmp_path: Path) -> None:
    # A bundle the shim never saw has no "runtime" file: the real shim's
    # delete fails and says so on stderr.
    binary = ShimBinary(_real_shim(), str(tmp_path / "g.sock"), str(tmp_path / "t.sock"), "/x")
    b = bundles.new_bundle(str(tmp_path / "root"), str(tmp_path / "state"), "ns1", "t1", b"{}")
    with pytest.raises(errdefs.Unknown) as exc:
        await binary.delete(b)
    assert "runtime" in str(exc.value)
    assert os.path.isdir(b.path)  # the caller decides about the bundle
