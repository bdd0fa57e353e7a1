"""Containers run through the real containerd-shim-runc-v2 and runc by ShimManager."""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest

from api import errdefs
from api.types import Mount
from services.tasks import AnyValue, ExecOpts, Status
from services.tasks.command import BootstrapParams
from services.tasks.connection import Connection
from tests.tasks.conftest import ShimEnv
from tests.tasks.support import alive, eventually, mounts_under, process_spec, shim_pids

pytestmark = [pytest.mark.root, pytest.mark.runc]

PROCESS_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"


async def test_echo_hi(shim_env: ShimEnv) -> None:
    env = shim_env
    m = env.manager()
    io, out = env.io("echo")
    task = await m.create(env.namespace, "echo", env.opts("echo", "echo", "hi", io=io))
    assert task.pid > 0
    assert (await task.state()).status == Status.CREATED
    bundle = task.bundle
    assert Path(bundle, "shim-binary-path").read_text() == task.runtime
    assert Path(bundle, "address").read_text().startswith("unix://")
    assert mounts_under(os.path.join(bundle, "rootfs"))  # the shim mounted the rootfs
    info = await task.connect()
    assert info.task_pid == task.pid and alive(info.shim_pid)

    await task.start()
    exit = await task.wait()
    assert exit.status == 0
    assert out.read_text() == "hi\n"
    assert [t.id for t in m.list(env.namespace)] == ["echo"]
    assert m.list("other") == []

    deleted = await m.delete(env.namespace, "echo")
    assert deleted.status == 0 and deleted.pid == task.pid
    with pytest.raises(errdefs.NotFound):
        m.get(env.namespace, "echo")
    await eventually(lambda: not alive(info.shim_pid), "the shim exits after delete")
    await env.assert_no_leftovers("echo")
    # The shim sent its events to TTRPC_ADDRESS; the manager published none itself.
    await eventually(
        lambda: "/tasks/delete" in env.intake.topics(env.namespace), "shim forwards TaskDelete"
    )
    topics = env.intake.topics(env.namespace)
    for topic in ("/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"):
        assert topic in topics
    assert env.publisher.events == []


async def test_exit_status_reaches_wait(shim_env: ShimEnv) -> None:
    env = shim_env
    m = env.manager()
    task = await m.create(env.namespace, "three", env.opts("three", "sh", "-c", "exit 3"))
    await task.start()
    assert (await task.wait()).status == 3
    state = await task.state()
    assert state.status == Status.STOPPED and state.exit_status == 3
    assert (await m.delete(env.namespace, "three")).status == 3
    await env.assert_no_leftovers("three")


async def test_exec_pause_resume_kill(shim_env: ShimEnv) -> None:
    env = shim_env
    m = env.manager()
    task = await m.create(env.namespace, "sleeper", env.opts("sleeper", "sleep", "1000"))
    await task.start()
    assert (await task.state()).status == Status.RUNNING

    io, out = env.io("exec1")
    spec = AnyValue(PROCESS_URL, process_spec(["sh", "-c", "echo from-exec; exit 7"]))
    proc = await task.exec("exec1", ExecOpts(spec=spec, io=io))
    with pytest.raises(errdefs.AlreadyExists):
        await task.exec("exec1", ExecOpts(spec=spec))
    with pytest.raises(errdefs.InvalidArgument, match="invalid exec id"):
        await task.exec("bad/id", ExecOpts(spec=spec))
    assert (await proc.state()).status == Status.CREATED
    assert await proc.start() > 0
    assert (await proc.wait()).status == 7
    assert out.read_text() == "from-exec\n"
    again = await task.process("exec1")
    assert (await again.state()).status == Status.STOPPED
    assert (await proc.delete()).status == 7
    with pytest.raises(errdefs.NotFound):
        await task.process("exec1")

    pids = [p.pid for p in await task.pids()]
    assert task.pid in pids
    await task.pause()
    assert (await task.state()).status == Status.PAUSED
    await task.resume()
    assert (await task.state()).status == Status.RUNNING
    stats = await task.stats()
    assert stats.type_url.startswith("io.containerd.cgroups.")

    # The runc shim refuses with a plain error (code Unknown), as containerd relays it.
    with pytest.raises(errdefs.Unknown, match="cannot delete a running process"):
        await m.delete(env.namespace, "sleeper")  # still running: it stays
    assert m.get(env.namespace, "sleeper") is task

    await task.kill(signal.SIGKILL)
    assert (await task.wait()).status == 128 + signal.SIGKILL
    await m.delete(env.namespace, "sleeper")
    await env.assert_no_leftovers("sleeper")


async def test_create_twice_and_bad_input(shim_env: ShimEnv) -> None:
    env = shim_env
    m = env.manager()
    await m.create(env.namespace, "one", env.opts("one", "true"))
    with pytest.raises(errdefs.AlreadyExists):
        await m.create(env.namespace, "one", env.opts("one", "true"))
    with pytest.raises(errdefs.InvalidArgument, match="invalid task id"):
        await m.create(env.namespace, "no/slash", env.opts("x", "true"))
    opts = replace(env.opts("two", "true"), runtime="io.containerd.nosuch.v1")
    with pytest.raises(errdefs.Unknown, match='binary not installed "containerd-shim-nosuch-v1"'):
        await m.create(env.namespace, "two", opts)
    assert sorted(os.listdir(os.path.join(env.state, env.namespace))) == ["one"]
    await m.delete(env.namespace, "one")
    await env.assert_no_leftovers("one")


async def test_failed_create_undoes_everything(shim_env: ShimEnv) -> None:
    env = shim_env
    m = env.manager()
    opts = env.opts("broken", "true")
    broken = replace(opts, rootfs=(Mount("bind", str(env.tmp / "no-such-dir"), ("rbind",)),))
    with pytest.raises(errdefs.ErrdefsError, match="failed to create shim task"):
        await m.create(env.namespace, "broken", broken)
    assert m.list() == []
    await env.assert_no_leftovers("broken")
    # The id is free again.
    task = await m.create(env.namespace, "broken", opts)
    await task.start()
    assert (await task.wait()).status == 0
    await m.delete(env.namespace, "broken")
    await env.assert_no_leftovers("broken")


async def test_failed_dial_shuts_the_new_shim_down(shim_env: ShimEnv) -> None:
    # Fault injection: the shim starts for real, the first connection to it fails.
    env = shim_env
    m = env.manager()
    real_dial = m.dial
    calls = []

    async def failing_once(params: BootstrapParams) -> Connection:
        calls.append(params.address)
        if len(calls) == 1:
            raise errdefs.Unavailable(f"injected failure dialing {params.address}")
        return await real_dial(params)

    m.dial = failing_once
    with pytest.raises(errdefs.Unavailable, match="failed to start shim: injected failure"):
        await m.create(env.namespace, "nodial", env.opts("nodial", "true"))
    # The undo reached the shim on a second connection and asked it to exit.
    assert len(calls) == 2
    await eventually(lambda: shim_pids(env.grpc_address) == [], "the shim exits")
    await env.assert_no_leftovers("nodial")
