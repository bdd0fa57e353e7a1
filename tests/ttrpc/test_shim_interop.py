"""Our client and server against the real ``containerd-shim-runc-v2`` (Debian's, containerd 1.6).

The shim is started the way containerd 1.6.20 starts it (runtime/v2/binary.go,
shim/util.go): ``containerd-shim-runc-v2 -namespace NS -address ADDR
-publish-binary BIN -id ID start`` in the bundle directory, with
``TTRPC_ADDRESS`` in its environment and a ``log`` fifo to write to; it prints
its socket address.  Our client then drives its ``containerd.task.v2.Task``
API while our server, listening at ``TTRPC_ADDRESS``, receives the task events
it forwards — the shim is a Go ttrpc client of our server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from google.protobuf import empty_pb2

from api import errdefs, namespaces
from api.containerd.events import task_pb2
from api.containerd.runtime.task.v2 import shim_pb2
from api.containerd.services.ttrpc.events.v1 import events_pb2
from api.containerd.types import event_pb2
from api.ttrpc import Client, ConnectionClosed, Context, Method, Server, shim_address_to_path
from services.harness import spawn
from tests.support import short_tmpdir
from tests.support.containerd import need_runc
from tests.support.oci import BUSYBOX, need_busybox

pytestmark = [pytest.mark.runc, pytest.mark.root]

SHIM = "containerd-shim-runc-v2"
TASK = "containerd.task.v2.Task"
EVENTS = "containerd.services.events.ttrpc.v1.Events"
RUNC_ROOT = Path("/run/containerd/runc")  # the shim's runc --root is RUNC_ROOT/<namespace>


@dataclass
class EventSink:
    """Our ttrpc Events service: what the shim forwards."""

    envelopes: list[event_pb2.Envelope] = field(default_factory=list)
    namespaces: list[str | None] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def forward(self, req: events_pb2.ForwardRequest, ctx: Context) -> empty_pb2.Empty:
        self.envelopes.append(req.envelope)
        self.namespaces.append(ctx.namespace())
        self.arrived.set()
        return empty_pb2.Empty()

    async def wait_for(self, topics: list[str]) -> None:
        async with asyncio.timeout(30):
            while [e.topic for e in self.envelopes if e.topic in topics] != topics:
                self.arrived.clear()
                await self.arrived.wait()


@dataclass
class Shim:
    namespace: str
    id: str
    bundle: Path
    grpc_address: str
    ttrpc_address: str

    def argv(self, *action: str) -> list[str]:
        return [
            SHIM,
            "-namespace",
            self.namespace,
            "-address",
            self.grpc_address,
            "-publish-binary",
            shutil.which("containerd") or "containerd",
            "-id",
            self.id,
            *action,
        ]

    def env(self) -> dict[str, str]:
        return {**os.environ, "TTRPC_ADDRESS": self.ttrpc_address}

    async def start(self) -> str:
        # As the daemon starts it (services/harness/spawn.py): the shim this
        # leaves running must not inherit our end of start's stdout.
        proc = spawn.start(
            self.argv("start"),
            cwd=str(self.bundle),
            env=self.env(),
            stdin=spawn.DEVNULL,
            stdout=spawn.PIPE,
            stderr=spawn.PIPE,
        )
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
        assert out is not None and err is not None
        assert proc.returncode == 0, f"shim start failed: {err.decode(errors='replace')}"
        return out.decode().strip()

    def delete(self) -> None:
        """containerd's cleanup of a dead shim (binary.Delete): kills and removes the container."""
        subprocess.run(
            [*self.argv("-bundle", str(self.bundle), "delete")],
            cwd=self.bundle,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
            check=False,
        )


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie awaiting its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def gone(pid: int) -> bool:
    for _ in range(600):
        if not alive(pid):
            return True
        await asyncio.sleep(0.05)
    return False


def make_bundle(bundle: Path, args: list[str]) -> None:
    """An OCI bundle from ``runc spec`` with a busybox rootfs."""
    rootfs = bundle / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    os.symlink("busybox", rootfs / "bin" / "sh")
    for d in ("proc", "dev", "sys", "tmp"):
        (rootfs / d).mkdir()
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True, timeout=30)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = args
    (bundle / "config.json").write_text(json.dumps(config))


@pytest.fixture
def shim_dirs() -> Iterator[tuple[Path, str]]:
    need_runc()
    need_busybox()
    with short_tmpdir("ttsh") as d:
        yield d, f"berthd-ttrpc-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def shim_env(shim_dirs: tuple[Path, str]) -> AsyncIterator[tuple[Shim, EventSink]]:
    """A bundle, our events server at TTRPC_ADDRESS, the shim's log fifo drained; cleans up."""
    d, ns = shim_dirs
    bundle = d / "bundle"
    make_bundle(bundle, ["/bin/sh", "-c", "exit 3"])
    sink = EventSink()
    server = Server()
    server.register(EVENTS, {"Forward": Method(events_pb2.ForwardRequest, sink.forward)})
    ttrpc_address = str(d / "berthd.sock.ttrpc")
    await server.serve_unix(ttrpc_address)
    shim = Shim(ns, "c1", bundle, str(d / "berthd.sock"), ttrpc_address)

    # The shim writes its log to the fifo "log" in the bundle and blocks until
    # someone reads it, as containerd does (openShimLog).
    fifo = bundle / "log"
    os.mkfifo(fifo, 0o700)
    log_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    log = bytearray()
    loop = asyncio.get_running_loop()

    def read_log() -> None:
        with contextlib.suppress(BlockingIOError):
            log.extend(os.read(log_fd, 65536))

    loop.add_reader(log_fd, read_log)
    try:
        yield shim, sink
    finally:
        shim.delete()
        loop.remove_reader(log_fd)
        os.close(log_fd)
        await server.close(0)
        state = RUNC_ROOT / ns
        assert not (state / shim.id).exists(), "runc state left behind"
        if state.is_dir():
            state.rmdir()
        mounts = Path("/proc/self/mountinfo").read_text()
        assert str(d) not in mounts, "mounts left behind"


async def connect(shim: Shim) -> tuple[Client, str]:
    address = await shim.start()
    assert address.startswith("unix://"), address
    client = await Client.connect(shim_address_to_path(address), timeout=10)
    return client, address


async def shutdown(client: Client, shim: Shim) -> None:
    """Shutdown makes the shim exit; it may close the connection before answering."""
    closed = asyncio.Event()
    client.on_close(closed.set)
    with contextlib.suppress(ConnectionClosed):
        await client.call(
            TASK, "Shutdown", shim_pb2.ShutdownRequest(id=shim.id), empty_pb2.Empty, timeout=30
        )
    async with asyncio.timeout(30):
        await closed.wait()
    await client.close()


async def test_connect_and_shutdown(shim_env: tuple[Shim, EventSink]) -> None:
    shim, _ = shim_env
    client, address = await connect(shim)
    md = {namespaces.TTRPC_HEADER: shim.namespace}
    info = await client.call(
        TASK,
        "Connect",
        shim_pb2.ConnectRequest(id=shim.id),
        shim_pb2.ConnectResponse,
        timeout=10,
        metadata=md,
    )
    assert info.shim_pid > 0 and alive(info.shim_pid)
    assert info.task_pid == 0  # no task created
    # The shim's ttrpc server answers unknown methods as ttrpc does.
    with pytest.raises(errdefs.NotImplemented) as err:
        await client.call(TASK, "NoSuchMethod", empty_pb2.Empty(), empty_pb2.Empty)
    assert err.value.message == "method NoSuchMethod"
    # And its typed errors arrive typed: there is no task c1 yet.
    with pytest.raises(errdefs.NotFound):
        await client.call(
            TASK, "State", shim_pb2.StateRequest(id=shim.id), shim_pb2.StateResponse, metadata=md
        )
    await shutdown(client, shim)
    assert await gone(info.shim_pid), "the shim did not exit after Shutdown"
    assert not os.path.exists(shim_address_to_path(address)), "shim socket left behind"


async def test_container_lifecycle_and_forwarded_events(shim_env: tuple[Shim, EventSink]) -> None:
    shim, sink = shim_env
    client, _ = await connect(shim)
    md = {namespaces.TTRPC_HEADER: shim.namespace}
    info = await client.call(
        TASK, "Connect", shim_pb2.ConnectRequest(id=shim.id), shim_pb2.ConnectResponse, metadata=md
    )
    created = await client.call(
        TASK,
        "Create",
        shim_pb2.CreateTaskRequest(id=shim.id, bundle=str(shim.bundle)),
        shim_pb2.CreateTaskResponse,
        metadata=md,
        timeout=60,
    )
    assert created.pid > 0
    waiting = asyncio.create_task(
        client.call(
            TASK, "Wait", shim_pb2.WaitRequest(id=shim.id), shim_pb2.WaitResponse, metadata=md
        )
    )
    started = await client.call(
        TASK, "Start", shim_pb2.StartRequest(id=shim.id), shim_pb2.StartResponse, metadata=md
    )
    assert started.pid == created.pid
    async with asyncio.timeout(60):
        waited = await waiting
    assert waited.exit_status == 3
    deleted = await client.call(
        TASK, "Delete", shim_pb2.DeleteRequest(id=shim.id), shim_pb2.DeleteResponse, metadata=md
    )
    assert (deleted.pid, deleted.exit_status) == (created.pid, 3)
    assert not alive(created.pid)

    topics = ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]
    await sink.wait_for(topics)
    by_topic = {e.topic: e for e in sink.envelopes}
    assert set(sink.namespaces) == {shim.namespace}
    assert {e.namespace for e in sink.envelopes} == {shim.namespace}
    create = task_pb2.TaskCreate.FromString(by_topic["/tasks/create"].event.value)
    assert (create.container_id, create.bundle, create.pid) == (
        shim.id,
        str(shim.bundle),
        created.pid,
    )
    start = task_pb2.TaskStart.FromString(by_topic["/tasks/start"].event.value)
    assert (start.container_id, start.pid) == (shim.id, created.pid)
    exit_ = task_pb2.TaskExit.FromString(by_topic["/tasks/exit"].event.value)
    assert (exit_.container_id, exit_.id, exit_.pid, exit_.exit_status) == (
        shim.id,
        shim.id,
        created.pid,
        3,
    )
    delete = task_pb2.TaskDelete.FromString(by_topic["/tasks/delete"].event.value)
    assert (delete.container_id, delete.pid, delete.exit_status) == (shim.id, created.pid, 3)
    for topic in topics:
        assert (
            by_topic[topic].event.type_url
            == "containerd.events."
            + {
                "/tasks/create": "TaskCreate",
                "/tasks/start": "TaskStart",
                "/tasks/exit": "TaskExit",
                "/tasks/delete": "TaskDelete",
            }[topic]
        )
        assert by_topic[topic].HasField("timestamp")

    await shutdown(client, shim)
    assert await gone(info.shim_pid), "the shim did not exit after Shutdown"
