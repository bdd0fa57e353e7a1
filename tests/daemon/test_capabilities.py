"""The daemon serves plugins by what their instances offer (gRPC, ttrpc,
close, readiness), with no change to ``daemon/server.py``; and its ttrpc
socket carries shims' events to ``ctr events`` subscribers."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2, empty_pb2, timestamp_pb2, wrappers_pb2

from api.containerd.events import task_pb2
from api.containerd.services.ttrpc.events.v1 import events_pb2 as ttrpc_events_pb2
from api.containerd.types import event_pb2
from api.ttrpc.client import Client
from api.ttrpc.service import Context as TtrpcContext
from api.ttrpc.service import Method
from daemon.capabilities import GrpcService, TtrpcService
from daemon.config import Overrides, parse_string, resolve
from daemon.proxybackends import ProxyPlugin
from daemon.registry import InitContext, Registration
from daemon.server import Daemon, builtin_registrations
from tests.support import PYTHON, need_binary, short_tmpdir
from tests.support.berthd import Berthd, CtrEvents

ECHO = "berthd.test.v1.Echo"


class Probe:
    """A test plugin offering a gRPC service, a ttrpc service and a close hook."""

    def __init__(self, name: str, closed: list[str]) -> None:
        self.name = name
        self.closed = closed

    def grpc_services(self) -> Sequence[GrpcService]:
        async def echo(request: bytes, ctx: object) -> bytes:
            return self.name.encode() + b":" + request

        handler = grpc.method_handlers_generic_handler(
            f"{ECHO}{self.name}", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
        )
        return (
            GrpcService((f"{ECHO}{self.name}",), lambda s: s.add_generic_rpc_handlers((handler,))),
        )

    def ttrpc_services(self) -> Sequence[TtrpcService]:
        async def echo(
            req: wrappers_pb2.StringValue, ctx: TtrpcContext
        ) -> wrappers_pb2.StringValue:
            return wrappers_pb2.StringValue(value=f"{self.name}:{req.value}:{ctx.namespace()}")

        return (
            TtrpcService(f"{ECHO}{self.name}", {"Echo": Method(wrappers_pb2.StringValue, echo)}),
        )

    async def close(self) -> None:
        self.closed.append(self.name)


def registrations(closed: list[str]) -> list[Registration]:
    async def first(ic: InitContext) -> Probe:
        return Probe("first", closed)

    async def second(ic: InitContext) -> Probe:
        return Probe("second", closed)

    return [
        *builtin_registrations(),
        Registration("io.berthd.test.v1", "first", first),
        Registration("io.berthd.test.v2", "second", second, ("io.berthd.test.v1",)),
    ]


@pytest.fixture
def workdir() -> Iterator[Path]:
    with short_tmpdir("bk") as d:
        yield d


async def test_test_plugin_served_on_both_sockets_and_closed_in_reverse(workdir: Path) -> None:
    d = workdir
    cfg = resolve(
        parse_string(f'version = 2\nroot = "{d}/root"\nstate = "{d}/run"\n', "test.toml"),
        Overrides(address=f"{d}/run/b.sock"),
    )
    closed: list[str] = []
    daemon = Daemon(cfg, registrations(closed))
    await daemon.start()
    try:
        ttrpc_path = f"{d}/run/b.sock.ttrpc"
        mode = stat.S_IMODE(os.stat(ttrpc_path).st_mode)
        assert mode & 0o007 == 0, oct(mode)  # no access for others
        async with grpc.aio.insecure_channel(f"unix://{d}/run/b.sock") as ch:
            for name in ("first", "second"):
                call = ch.unary_unary(f"/{ECHO}{name}/Echo")
                assert await call(b"hi", timeout=5) == name.encode() + b":hi"
        client = await Client.connect(ttrpc_path, timeout=5)
        try:
            for name in ("first", "second"):
                got = await client.call(
                    f"{ECHO}{name}",
                    "Echo",
                    wrappers_pb2.StringValue(value="hi"),
                    wrappers_pb2.StringValue,
                    timeout=5,
                    metadata={"containerd-namespace-ttrpc": "ns1"},
                )
                assert got.value == f"{name}:hi:ns1"
        finally:
            await client.close()
    finally:
        await daemon.stop()
    # reverse init order: second (which requires first) closes first
    assert closed == ["second", "first"]
    assert not os.path.exists(f"{d}/run/b.sock.ttrpc")


def _forward(address: str, env: event_pb2.Envelope) -> None:
    async def go() -> None:
        client = await Client.connect(address, timeout=5)
        try:
            await client.call(
                "containerd.services.events.ttrpc.v1.Events",
                "Forward",
                ttrpc_events_pb2.ForwardRequest(envelope=env),
                empty_pb2.Empty,
                timeout=5,
            )
        finally:
            await client.close()

    asyncio.run(go())


@pytest.mark.containerd
def test_ttrpc_forward_reaches_ctr_events(workdir: Path) -> None:
    need_binary("ctr")
    with Berthd(workdir, "version = 2\n") as b:
        events = CtrEvents(b.address)
        try:
            exit_event = task_pb2.TaskExit(container_id="c1", id="c1", pid=42, exit_status=3)
            payload = any_pb2.Any(
                type_url="containerd.events.TaskExit", value=exit_event.SerializeToString()
            )
            env = event_pb2.Envelope(
                timestamp=timestamp_pb2.Timestamp(seconds=int(time.time())),
                namespace="ns-fwd",
                topic="/tasks/exit",
                event=payload,
            )

            def poke() -> str:
                # Forwarded again until ctr, which says nothing when it has
                # subscribed, shows it.
                _forward(b.address + ".ttrpc", env)
                return "/tasks/exit"

            events.subscribed(poke)
            line = events.seen[-1]
            assert "ns-fwd" in line and '"exit_status":3' in line.replace(" ", ""), line
        finally:
            events.stop()


async def test_every_proxy_backend_closes_its_connection(workdir: Path) -> None:
    d = workdir
    text = "version = 2\n" + "".join(
        f'[proxy_plugins.p{kind}]\ntype = "{kind}"\naddress = "{d}/p/{kind}.sock"\n'
        for kind in ("content", "snapshot", "diff")
    )
    cfg = resolve(
        parse_string(f'root = "{d}/root"\nstate = "{d}/run"\n' + text, "test.toml"),
        Overrides(address=f"{d}/run/b.sock"),
    )
    daemon = Daemon(cfg)
    await daemon.start()
    backends = [p.instance for p in daemon.plugins.all() if isinstance(p.instance, ProxyPlugin)]
    assert len(backends) == 3
    await daemon.stop()
    for b in backends:
        monitor = b.connection._monitor
        assert monitor is not None and monitor.done(), b.describe


@pytest.mark.containerd
def test_berthd_publish_reaches_ctr_events(workdir: Path) -> None:
    """What shims run through -publish-binary: the event (an Any) on stdin."""
    need_binary("ctr")
    with Berthd(workdir, "version = 2\n") as b:
        events = CtrEvents(b.address)
        try:
            oom = task_pb2.TaskOOM(container_id="c-oom")
            payload = any_pb2.Any(
                type_url="containerd.events.TaskOOM", value=oom.SerializeToString()
            ).SerializeToString()

            def poke() -> str:
                out = subprocess.run(
                    [PYTHON, "-m", "daemon.cli", "--address", b.address, "publish",
                     "--topic", "/tasks/oom", "--namespace", "ns-pub"],
                    input=payload,
                    capture_output=True,
                    timeout=30,
                    check=False,
                )  # fmt: skip
                assert out.returncode == 0, out.stderr
                return "/tasks/oom"

            events.subscribed(poke)
            assert "ns-pub" in events.seen[-1] and "c-oom" in events.seen[-1]
            bad = subprocess.run(
                [PYTHON, "-m", "daemon.cli", "--address", b.address, "publish",
                 "--topic", "no-slash", "--namespace", "ns-pub"],
                input=payload,
                capture_output=True,
                timeout=30,
                check=False,
            )  # fmt: skip
            assert bad.returncode == 1
            assert "topic" in bad.stderr.decode() and "Traceback" not in bad.stderr.decode()
        finally:
            events.stop()
