"""Shims outliving the manager, shims dying under it, and what load finds after a restart."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path

import pytest

from api import errdefs
from api.containerd.events import task_pb2 as events
from services.tasks import AnyValue, ExecOpts, Status
from services.tasks import bundle as bundles
from services.tasks.shimlog import ShimLog
from tests.tasks.conftest import ShimEnv
from tests.tasks.support import (
    alive,
    eventually,
    mounts_under,
    oci_spec,
    process_spec,
    shim_pids,
)

pytestmark = [pytest.mark.root, pytest.mark.runc]

KILLED = 128 + signal.SIGKILL
PROCESS_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"


async def test_restart_keeps_running_tasks(shim_env: ShimEnv) -> None:
    env = shim_env
    m = env.manager()
    task = await m.create(env.namespace, "survivor", env.opts("survivor", "sleep", "1000"))
    await task.start()
    shim_pid = (await task.connect()).shim_pid
    pending = asyncio.ensure_future(task.wait())
    await asyncio.sleep(0.1)

    await m.close()
    # A Wait in flight ends (the daemon is going away), the shim does not.
    with pytest.raises(errdefs.Unavailable):
        await pending
    assert alive(shim_pid) and alive(task.pid)
    assert env.publisher.events == []

    m2 = env.manager()
    await m2.load()
    again = m2.get(env.namespace, "survivor")
    assert again.pid == task.pid
    assert again.runtime == task.runtime
    state = await again.state()
    assert state.status == Status.RUNNING and state.pid == task.pid
    await again.kill(signal.SIGKILL)
    assert (await again.wait()).status == KILLED
    assert (await m2.delete(env.namespace, "survivor")).status == KILLED
    await eventually(lambda: not alive(shim_pid), "the shim exits after delete")
    await env.assert_no_leftovers("survivor")


async def test_shim_killed_under_the_manager(shim_env: ShimEnv) -> None:
    env = shim_env
    m = env.manager()
    task = await m.create(env.namespace, "victim", env.opts("victim", "sleep", "1000"))
    await task.start()
    init_pid = task.pid
    shim_pid = (await task.connect()).shim_pid
    spec = AnyValue(PROCESS_URL, process_spec(["sleep", "1000"]))
    proc = await task.exec("side", ExecOpts(spec=spec))
    await proc.start()
    pending = asyncio.ensure_future(task.wait())
    pending_exec = asyncio.ensure_future(proc.wait())
    await asyncio.sleep(0.1)

    os.kill(shim_pid, signal.SIGKILL)
    # The pending Waits end: the exec's with NotFound, the task's with what
    # the cleanup found (the shim's delete command killed the container).
    with pytest.raises(errdefs.NotFound):
        await pending_exec
    exit = await pending
    assert exit.status == KILLED
    state = await task.state()
    assert state.status == Status.STOPPED and state.exit_status == KILLED
    assert m.get(env.namespace, "victim") is task  # listed until deleted
    await eventually(lambda: not alive(init_pid), "the container's init is killed")
    await env.assert_no_leftovers("victim")

    assert env.publisher.topics() == ["/tasks/exit", "/tasks/delete"]
    (ns1, _, exit_event), (ns2, _, delete_event) = env.publisher.events
    assert ns1 == ns2 == env.namespace
    assert isinstance(exit_event, events.TaskExit) and isinstance(delete_event, events.TaskDelete)
    assert exit_event.container_id == exit_event.id == "victim"
    assert exit_event.exit_status == delete_event.exit_status == KILLED
    assert exit_event.pid == delete_event.pid == init_pid
    assert delete_event.container_id == "victim"

    with pytest.raises(errdefs.NotFound):
        await task.kill(signal.SIGTERM)
    assert (await task.wait()).status == KILLED
    assert (await m.delete(env.namespace, "victim")).status == KILLED
    with pytest.raises(errdefs.NotFound):
        m.get(env.namespace, "victim")


async def test_load_cleans_up_after_a_dead_shim(shim_env: ShimEnv) -> None:
    env = shim_env
    m = env.manager()
    task = await m.create(env.namespace, "orphan", env.opts("orphan", "sleep", "1000"))
    await task.start()
    init_pid = task.pid
    shim_pid = (await task.connect()).shim_pid
    await m.close()
    os.kill(shim_pid, signal.SIGKILL)
    await eventually(lambda: not alive(shim_pid), "the shim is dead")

    m2 = env.manager()
    await m2.load()
    assert m2.list() == []
    await eventually(lambda: not alive(init_pid), "the container's init is killed")
    await env.assert_no_leftovers("orphan")
    # containerd publishes nothing for a shim found dead at load.
    assert env.publisher.events == []


async def test_load_removes_half_created_bundles(shim_env: ShimEnv) -> None:
    env = shim_env
    # The daemon died right after laying out the bundle: no shim ever ran.
    b1 = bundles.new_bundle(env.root, env.state, env.namespace, "nostart", b"{}")
    # ... or after the shim started but before Create reached it (a leaked shim).
    b2 = bundles.new_bundle(
        env.root,
        env.state,
        env.namespace,
        "nocreate",
        oci_spec(env.namespace, "nocreate", ["true"]),
    )
    env.ids.add("nocreate")
    m = env.manager()
    binary = m.binary(shutil.which("containerd-shim-runc-v2") or "")
    # The shim needs a reader on its log FIFO while it starts, as the manager provides.
    shim_log = ShimLog(b2.file("log"), env.namespace, "nocreate")
    shim_log.open()
    await binary.start(b2, None)
    Path(b2.file("shim-binary-path")).write_text(binary.path)
    leaked = shim_pids(env.grpc_address)
    assert len(leaked) == 1
    shim_log.close()  # the daemon is gone
    # Leftovers of an interrupted atomic removal, and a work dir nobody owns.
    hidden = Path(env.state, env.namespace, ".gone")
    (hidden / "rootfs").mkdir(parents=True)
    stray = Path(env.root, env.namespace, "stray")
    stray.mkdir(parents=True)

    await m.load()
    assert m.list() == []
    await eventually(lambda: not alive(leaked[0]), "the leaked shim exits")
    for b in (b1, b2):
        assert not os.path.exists(b.path) and not os.path.exists(b.work_dir)
    assert not hidden.exists() and not stray.exists()
    assert mounts_under(env.state) == []
    assert env.publisher.events == []
