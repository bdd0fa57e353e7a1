"""Runtime options, resource updates, stdin, terminals and exec signals through the real shim."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest

from api import errdefs
from api.containerd.types.runc.options import oci_pb2 as runc_options
from services.tasks import AnyValue, ExecOpts, Status
from services.tasks.types import IO
from tests.tasks.conftest import ShimEnv
from tests.tasks.support import eventually, mounts_under, oci_spec, process_spec, shim_pids

pytestmark = [pytest.mark.root, pytest.mark.runc]

PROCESS_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
RESOURCES_URL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"


async def test_runtime_options_reach_the_shim(shim_env: ShimEnv) -> None:
    env = shim_env
    m = env.manager()
    runc_root = env.tmp / "runc-root"
    options = runc_options.Options(root=str(runc_root))
    opts = replace(
        env.opts("opts", "true"),
        runtime_options=AnyValue("containerd.runc.v1.Options", options.SerializeToString()),
    )
    task = await m.create(env.namespace, "opts", opts)
    # The runc shim puts runc's state under Options.root/<namespace>.
    assert (runc_root / env.namespace / "opts" / "state.json").exists()
    await task.start()
    assert (await task.wait()).status == 0
    await m.delete(env.namespace, "opts")
    assert not (runc_root / env.namespace / "opts").exists()


async def test_options_the_shim_cannot_read_fail_its_start(shim_env: ShimEnv) -> None:
    # The options go to `start` on stdin: a type the shim does not know makes it fail.
    env = shim_env
    m = env.manager()
    opts = replace(env.opts("badopts", "true"), task_options=AnyValue("example.com/NoSuch", b"x"))
    with pytest.raises(errdefs.Unknown, match="failed to start shim: start failed") as exc:
        await m.create(env.namespace, "badopts", opts)
    assert "example.com/NoSuch" in str(exc.value)
    assert m.list() == []
    assert shim_pids(env.grpc_address) == []
    assert os.listdir(os.path.join(env.state, env.namespace)) == []


async def test_update_resources(shim_env: ShimEnv) -> None:
    env = shim_env
    pids_cgroup = Path("/sys/fs/cgroup/pids")
    if not pids_cgroup.is_dir():
        pytest.skip("needs the cgroup v1 pids controller at /sys/fs/cgroup/pids")
    m = env.manager()
    task = await m.create(env.namespace, "limits", env.opts("limits", "sleep", "1000"))
    await task.start()
    resources = json.dumps({"pids": {"limit": 42}}).encode()
    await task.update(AnyValue(RESOURCES_URL, resources))
    limit = pids_cgroup / env.namespace / "limits" / "pids.max"
    assert limit.read_text().strip() == "42"
    await task.kill(signal.SIGKILL)
    await task.wait()
    await m.delete(env.namespace, "limits")


async def test_exec_kill(shim_env: ShimEnv) -> None:
    env = shim_env
    m = env.manager()
    task = await m.create(env.namespace, "host", env.opts("host", "sleep", "1000"))
    await task.start()
    spec = AnyValue(PROCESS_URL, process_spec(["sleep", "1000"]))
    proc = await task.exec("sleeper2", ExecOpts(spec=spec))
    pid = await proc.start()
    assert pid in [p.pid for p in await task.pids()]
    await proc.kill(signal.SIGKILL)
    assert (await proc.wait()).status == 128 + signal.SIGKILL
    await proc.delete()
    await task.kill(signal.SIGKILL)
    await task.wait()
    await m.delete(env.namespace, "host")
    assert mounts_under(env.state) == []


async def test_close_io_ends_stdin(shim_env: ShimEnv) -> None:
    env = shim_env
    m = env.manager()
    stdin = env.tmp / "stdin"
    os.mkfifo(stdin)
    writer = os.open(stdin, os.O_RDWR | os.O_NONBLOCK)
    io, out = env.io("cat")
    opts = env.opts("cat", "cat", io=replace(io, stdin=str(stdin)))
    try:
        task = await m.create(env.namespace, "cat", opts)
        await task.start()
        os.write(writer, b"through stdin\n")
        await eventually(
            lambda: out.exists() and out.read_text() == "through stdin\n", "cat echoes stdin"
        )
    finally:
        os.close(writer)
    # The shim holds the FIFO open for writing too (as ctr's client does
    # after closing its own end): CloseIO drops that, cat sees end-of-file.
    await task.close_io()
    assert (await task.wait()).status == 0
    await m.delete(env.namespace, "cat")


async def test_terminal_and_resize(shim_env: ShimEnv) -> None:
    env = shim_env
    m = env.manager()
    stdin, stdout = env.tmp / "tty-in", env.tmp / "tty-out"
    os.mkfifo(stdin)
    os.mkfifo(stdout)
    writer = os.open(stdin, os.O_RDWR | os.O_NONBLOCK)
    reader = os.open(stdout, os.O_RDWR | os.O_NONBLOCK)
    seen = bytearray()

    def read_tty() -> bytes:
        with contextlib.suppress(BlockingIOError):
            seen.extend(os.read(reader, 65536))
        return bytes(seen)

    try:
        spec = json.loads(oci_spec(env.namespace, "tty", ["sh", "-c", "read go; stty size"]))
        spec["process"]["terminal"] = True
        opts = replace(
            env.opts("tty"),
            spec=json.dumps(spec).encode(),
            io=IO(stdin=str(stdin), stdout=str(stdout), terminal=True),
        )
        task = await m.create(env.namespace, "tty", opts)
        await task.start()
        await task.resize_pty(100, 40)
        os.write(writer, b"go\n")
        assert (await task.wait()).status == 0
        await eventually(lambda: b"40 100" in read_tty(), "stty reports the new size")
    finally:
        os.close(writer)
        os.close(reader)
    await m.delete(env.namespace, "tty")
    with pytest.raises(errdefs.NotFound):
        m.get(env.namespace, "tty")


async def test_cancelled_wait_leaves_the_task_usable(shim_env: ShimEnv) -> None:
    env = shim_env
    m = env.manager()
    task = await m.create(env.namespace, "patient", env.opts("patient", "sleep", "1000"))
    await task.start()
    waiter = asyncio.ensure_future(task.wait())
    await asyncio.sleep(0.1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await task.kill(signal.SIGKILL)
    assert (await task.wait()).status == 128 + signal.SIGKILL
    await m.delete(env.namespace, "patient")


async def test_checkpoint_reaches_criu(shim_env: ShimEnv) -> None:
    env = shim_env
    m = env.manager()
    task = await m.create(env.namespace, "ckpt", env.opts("ckpt", "sleep", "1000"))
    await task.start()
    image = env.tmp / "checkpoint"
    options = runc_options.CheckpointOptions(exit=False)
    try:
        await task.checkpoint(
            str(image),
            AnyValue("containerd.runc.v1.CheckpointOptions", options.SerializeToString()),
        )
    except errdefs.ErrdefsError as e:
        # Where criu cannot run (e.g. no vdso support), runc's failure comes
        # back as a typed error and the task keeps running.
        assert "criu" in str(e).lower() or "checkpoint" in str(e).lower()
    else:
        assert any(image.iterdir())
    assert (await task.state()).status == Status.RUNNING
    await task.kill(signal.SIGKILL)
    await task.wait()
    await m.delete(env.namespace, "ckpt")
