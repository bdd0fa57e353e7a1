"""A task as seen through its shim's ``containerd.task.v2.Task`` service.

This is the only place the shim's wire messages appear: each method builds
its request, sends it over the task's connection with the namespace in the
ttrpc metadata, and turns the answer into plain values.

A shim that vanishes (its connection closes while nobody is closing it)
makes the task *lost*: the manager runs the dead-shim cleanup and then calls
:meth:`ShimTask.mark_dead` with the exit it found.  Calls pending at that
moment end (Wait returns that exit), later calls that need the shim raise
NotFound, and :meth:`state` reports STOPPED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from google.protobuf import any_pb2, empty_pb2, message, timestamp_pb2

from api import errdefs, identifiers
from api.containerd.runtime.task.v2 import shim_pb2
from api.containerd.types import mount_pb2
from api.types import NAMESPACE_TTRPC_HEADER
from services.tasks.bundle import Bundle
from services.tasks.connection import Connection
from services.tasks.types import (
    AnyValue,
    ConnectInfo,
    CreateOpts,
    ExecOpts,
    Exit,
    ProcessInfo,
    State,
    Status,
)

__all__ = ["SERVICE", "ShimProcess", "ShimTask"]

log = logging.getLogger(__name__)

SERVICE = "containerd.task.v2.Task"

_M = type[message.Message]


def _any(value: AnyValue | None) -> any_pb2.Any | None:
    if value is None:
        return None
    return any_pb2.Any(type_url=value.type_url, value=value.value)


def _from_any(value: any_pb2.Any) -> AnyValue:
    return AnyValue(type_url=value.type_url, value=value.value)


def _status(value: int) -> Status:
    try:
        return Status(value)
    except ValueError:
        return Status.UNKNOWN


def _time(ts: timestamp_pb2.Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


# How long State waits for a dead shim's cleanup to record the exit.
DEAD_STATE_WAIT = 10.0


class ShimTask:
    """The task of one shim; implements :class:`services.tasks.runtime.Task`."""

    def __init__(
        self,
        bundle: Bundle,
        conn: Connection,
        runtime: str,
        on_lost: Callable[[ShimTask], None] | None = None,
    ) -> None:
        self._bundle = bundle
        self._conn = conn
        self._runtime = runtime
        self._pid = 0
        self._on_lost = on_lost
        self._closing = False
        self._lost = False
        self._dead = asyncio.Event()
        self._exit: Exit | None = None
        self._metadata = {NAMESPACE_TTRPC_HEADER: bundle.namespace}
        conn.on_close(self._connection_closed)

    # -- identity -------------------------------------------------------

    @property
    def id(self) -> str:
        return self._bundle.id

    @property
    def namespace(self) -> str:
        return self._bundle.namespace

    @property
    def bundle(self) -> str:
        return self._bundle.path

    @property
    def bundle_info(self) -> Bundle:
        return self._bundle

    @property
    def runtime(self) -> str:
        return self._runtime

    @property
    def pid(self) -> int:
        return self._pid

    # -- connection lifecycle ----------------------------------------------

    @property
    def lost(self) -> bool:
        """The shim's connection closed without anyone closing it."""
        return self._lost

    @property
    def dead_exit(self) -> Exit | None:
        """The exit the dead-shim cleanup recorded (None while the shim is alive)."""
        return self._exit

    def _connection_closed(self) -> None:
        if self._closing or self._lost:
            return
        self._lost = True
        log.info("shim disconnected: %s/%s", self.namespace, self.id)
        if self._on_lost is not None:
            self._on_lost(self)

    @property
    def gone(self) -> bool:
        """The shim is dead or dying (lost connection), or its cleanup finished."""
        # A pending call can fail before the close callback has run, so a
        # closed connection nobody closed counts as lost already.
        if self._lost or self._dead.is_set():
            return True
        if self._closing or self._on_lost is None:
            return False
        return self._conn.closed

    def detach(self) -> None:
        """From now on a closing connection is expected (delete, shutdown, daemon exit)."""
        self._closing = True

    def mark_dead(self, exit: Exit) -> None:
        """Record how the task ended after its shim died; wakes pending waits."""
        self._exit = exit
        self._lost = True
        self._dead.set()

    async def wait_dead(self) -> Exit:
        """Block until the dead-shim cleanup recorded an exit."""
        await self._dead.wait()
        assert self._exit is not None
        return self._exit

    async def close(self) -> None:
        """Close the connection without touching the shim (on_lost does not fire)."""
        self._closing = True
        try:
            await self._conn.close()
        except Exception as e:
            log.debug("closing shim connection %s/%s: %s", self.namespace, self.id, e)

    # -- calls -----------------------------------------------------------

    def _gone(self) -> errdefs.NotFound:
        return errdefs.NotFound(f"task {self.id}: shim exited")

    async def call(
        self, method: str, request: message.Message, response_type: _M
    ) -> message.Message:
        """One call to the shim's task service (raises the shim's errdefs class)."""
        if self._lost:
            raise self._gone()
        return await self._conn.call(
            SERVICE, method, request, response_type, metadata=self._metadata
        )

    async def create(self, opts: CreateOpts) -> int:
        """The shim's Create: the init process exists, not yet started.  Returns its pid."""
        req = shim_pb2.CreateTaskRequest(
            id=self.id,
            bundle=self.bundle,
            rootfs=[
                mount_pb2.Mount(type=m.type, source=m.source, target=m.target, options=m.options)
                for m in opts.rootfs
            ],
            terminal=opts.io.terminal,
            stdin=opts.io.stdin,
            stdout=opts.io.stdout,
            stderr=opts.io.stderr,
            checkpoint=opts.checkpoint,
            parent_checkpoint=opts.parent_checkpoint,
            options=_any(opts.options),
        )
        resp = await self.call("Create", req, shim_pb2.CreateTaskResponse)
        assert isinstance(resp, shim_pb2.CreateTaskResponse)
        self._pid = resp.pid
        return resp.pid

    async def connect(self) -> ConnectInfo:
        resp = await self.call(
            "Connect", shim_pb2.ConnectRequest(id=self.id), shim_pb2.ConnectResponse
        )
        assert isinstance(resp, shim_pb2.ConnectResponse)
        if resp.task_pid:
            self._pid = resp.task_pid
        return ConnectInfo(shim_pid=resp.shim_pid, task_pid=resp.task_pid, version=resp.version)

    async def start(self) -> int:
        return await self._start("")

    async def _start(self, exec_id: str) -> int:
        req = shim_pb2.StartRequest(id=self.id, exec_id=exec_id)
        resp = await self.call("Start", req, shim_pb2.StartResponse)
        assert isinstance(resp, shim_pb2.StartResponse)
        if not exec_id:
            self._pid = resp.pid
        return resp.pid

    async def state(self) -> State:
        if self._exit is None and self.gone and not self._closing:
            # The shim just died: its cleanup is recording the exit; answer
            # with that rather than "not found" in between.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DEAD_STATE_WAIT):
                    await self._dead.wait()
        if self._exit is not None:
            return State(
                id=self.id,
                exec_id="",
                pid=self._exit.pid or self._pid,
                status=Status.STOPPED,
                bundle=self.bundle,
                exit_status=self._exit.status,
                exited_at=self._exit.exited_at,
            )
        return await self._state("")

    async def _state(self, exec_id: str) -> State:
        req = shim_pb2.StateRequest(id=self.id, exec_id=exec_id)
        try:
            resp = await self.call("State", req, shim_pb2.StateResponse)
        except errdefs.Unavailable:
            # containerd: a closed connection means the process is not found.
            raise errdefs.NotFound(f"task {self.id}: shim connection closed") from None
        assert isinstance(resp, shim_pb2.StateResponse)
        return State(
            id=resp.id or self.id,
            exec_id=resp.exec_id or exec_id,
            pid=resp.pid,
            status=Status(resp.status)
            if resp.status in Status._value2member_map_
            else Status.UNKNOWN,
            bundle=resp.bundle,
            stdin=resp.stdin,
            stdout=resp.stdout,
            stderr=resp.stderr,
            terminal=resp.terminal,
            exit_status=resp.exit_status,
            exited_at=_time(resp.exited_at) if resp.HasField("exited_at") else None,
        )

    async def kill(self, signal: int, *, all: bool = False) -> None:
        await self._kill("", signal, all)

    async def _kill(self, exec_id: str, signal: int, all: bool) -> None:
        req = shim_pb2.KillRequest(id=self.id, exec_id=exec_id, signal=signal, all=all)
        await self.call("Kill", req, empty_pb2.Empty)

    async def pause(self) -> None:
        await self.call("Pause", shim_pb2.PauseRequest(id=self.id), empty_pb2.Empty)

    async def resume(self) -> None:
        await self.call("Resume", shim_pb2.ResumeRequest(id=self.id), empty_pb2.Empty)

    async def pids(self) -> list[ProcessInfo]:
        resp = await self.call("Pids", shim_pb2.PidsRequest(id=self.id), shim_pb2.PidsResponse)
        assert isinstance(resp, shim_pb2.PidsResponse)
        return [
            ProcessInfo(pid=p.pid, info=_from_any(p.info) if p.HasField("info") else None)
            for p in resp.processes
        ]

    async def resize_pty(self, width: int, height: int) -> None:
        await self._resize_pty("", width, height)

    async def _resize_pty(self, exec_id: str, width: int, height: int) -> None:
        req = shim_pb2.ResizePtyRequest(id=self.id, exec_id=exec_id, width=width, height=height)
        await self.call("ResizePty", req, empty_pb2.Empty)

    async def close_io(self) -> None:
        await self._close_io("")

    async def _close_io(self, exec_id: str) -> None:
        req = shim_pb2.CloseIORequest(id=self.id, exec_id=exec_id, stdin=True)
        await self.call("CloseIO", req, empty_pb2.Empty)

    async def wait(self) -> Exit:
        if self._exit is not None:
            return self._exit
        req = shim_pb2.WaitRequest(id=self.id)
        try:
            resp = await self.call("Wait", req, shim_pb2.WaitResponse)
        except (errdefs.Unavailable, errdefs.NotFound):
            if not self.gone:
                raise
            # The shim died under the Wait: the cleanup's exit is the answer.
            return await self.wait_dead()
        assert isinstance(resp, shim_pb2.WaitResponse)
        return Exit(pid=self._pid, status=resp.exit_status, exited_at=_time(resp.exited_at))

    async def _wait_exec(self, exec_id: str) -> Exit:
        req = shim_pb2.WaitRequest(id=self.id, exec_id=exec_id)
        try:
            resp = await self.call("Wait", req, shim_pb2.WaitResponse)
        except errdefs.Unavailable:
            if not self.gone:
                raise
            raise errdefs.NotFound(f"process {exec_id} of task {self.id}: shim exited") from None
        assert isinstance(resp, shim_pb2.WaitResponse)
        return Exit(pid=0, status=resp.exit_status, exited_at=_time(resp.exited_at))

    async def checkpoint(self, path: str, options: AnyValue | None = None) -> None:
        req = shim_pb2.CheckpointTaskRequest(id=self.id, path=path, options=_any(options))
        await self.call("Checkpoint", req, empty_pb2.Empty)

    async def update(
        self, resources: AnyValue | None, annotations: Mapping[str, str] | None = None
    ) -> None:
        req = shim_pb2.UpdateTaskRequest(
            id=self.id, resources=_any(resources), annotations=dict(annotations or {})
        )
        await self.call("Update", req, empty_pb2.Empty)

    async def stats(self) -> AnyValue:
        resp = await self.call("Stats", shim_pb2.StatsRequest(id=self.id), shim_pb2.StatsResponse)
        assert isinstance(resp, shim_pb2.StatsResponse)
        return _from_any(resp.stats)

    async def exec(self, exec_id: str, opts: ExecOpts) -> ShimProcess:
        try:
            identifiers.validate(exec_id)
        except errdefs.InvalidArgument as e:
            raise errdefs.InvalidArgument(f"invalid exec id {exec_id!r}: {e.message}") from None
        req = shim_pb2.ExecProcessRequest(
            id=self.id,
            exec_id=exec_id,
            terminal=opts.io.terminal,
            stdin=opts.io.stdin,
            stdout=opts.io.stdout,
            stderr=opts.io.stderr,
            spec=_any(opts.spec),
        )
        await self.call("Exec", req, empty_pb2.Empty)
        return ShimProcess(self, exec_id)

    async def process(self, exec_id: str) -> ShimProcess:
        p = ShimProcess(self, exec_id)
        await p.state()
        return p

    async def delete_process(self, exec_id: str) -> Exit:
        """The shim's Delete for ``exec_id`` ("" deletes the init process's state)."""
        req = shim_pb2.DeleteRequest(id=self.id, exec_id=exec_id)
        resp = await self.call("Delete", req, shim_pb2.DeleteResponse)
        assert isinstance(resp, shim_pb2.DeleteResponse)
        return Exit(pid=resp.pid, status=resp.exit_status, exited_at=_time(resp.exited_at))

    async def shutdown(self, *, now: bool = False) -> None:
        req = shim_pb2.ShutdownRequest(id=self.id, now=now)
        # A shim that exits before it answers did what was asked.
        with contextlib.suppress(errdefs.Unavailable):
            await self.call("Shutdown", req, empty_pb2.Empty)


class ShimProcess:
    """An exec process of a :class:`ShimTask`; implements ``runtime.Process``."""

    def __init__(self, task: ShimTask, exec_id: str) -> None:
        self._task = task
        self._id = exec_id

    @property
    def id(self) -> str:
        return self._id

    async def start(self) -> int:
        return await self._task._start(self._id)

    async def state(self) -> State:
        if self._task.lost:
            raise errdefs.NotFound(f"process {self._id} of task {self._task.id}: shim exited")
        return await self._task._state(self._id)

    async def kill(self, signal: int) -> None:
        await self._task._kill(self._id, signal, False)

    async def resize_pty(self, width: int, height: int) -> None:
        await self._task._resize_pty(self._id, width, height)

    async def close_io(self) -> None:
        await self._task._close_io(self._id)

    async def wait(self) -> Exit:
        return await self._task._wait_exec(self._id)

    async def delete(self) -> Exit:
        return await self._task.delete_process(self._id)
