"""``containerd.services.tasks.v1.Tasks`` on the daemon socket.

Thin like containerd's services/tasks/local.go: every call names a
container, whose record (metadata layer) says which runtime runs it; the
runtime (``services.tasks``, shims over ttrpc) does the work.  What a task
is made of comes from the container and the request: the spec from the
container record, the rootfs mounts and stdio paths from the request, the
runtime options from the container, task options and a checkpoint to
restore from the request.  Shims publish the task events themselves (over
the daemon's ttrpc Forward), so this module publishes none.

Error classes follow containerd's: a container without a task is NotFound
("task X not found"), Create on a container with a task AlreadyExists, an
exec without an id InvalidArgument; errors from the shim keep their class.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import any_pb2, empty_pb2, timestamp_pb2

from api import errdefs, filters, namespaces
from api.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from api.containerd.types import metrics_pb2
from api.containerd.types.task import task_pb2
from api.types import LEASE_HEADER, Mount
from daemon.metadata import records
from daemon.metadata.containers import ContainerStore
from daemon.tasks import legacy
from daemon.tasks.checkpoint import Checkpoints
from services.tasks.runtime import Process, Runtime, Task
from services.tasks.types import IO, AnyValue, CreateOpts, ExecOpts, Exit, State, Status

log = logging.getLogger(__name__)

SERVICE_NAME = "containerd.services.tasks.v1.Tasks"

Context = grpc.aio.ServicerContext[Any, Any]


def _namespace(context: Context) -> str:
    return namespaces.required(context.invocation_metadata())


def _lease(context: Context) -> str:
    for key, value in context.invocation_metadata() or ():
        if key.lower() == LEASE_HEADER:
            return value.decode() if isinstance(value, bytes) else value
    return ""


def _any(raw: bytes | None) -> AnyValue | None:
    """A container record's serialized Any as the runtime's value type."""
    if not raw:
        return None
    a = any_pb2.Any()
    a.ParseFromString(raw)
    return AnyValue(a.type_url, a.value)


def _request_any(a: any_pb2.Any, present: bool) -> AnyValue | None:
    return AnyValue(a.type_url, a.value) if present else None


def _timestamp(when: datetime | None) -> timestamp_pb2.Timestamp | None:
    if when is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when.astimezone(UTC))
    return ts


# How long a State call to a shim may take before the task is shown as
# UNKNOWN (containerd's stateTimeout).
STATE_TIMEOUT = 2.0


async def _state(p: Task | Process) -> State:
    """``p``'s state; NotFound when it is gone; any other failure (a stuck or
    broken shim) logged and shown as UNKNOWN, as containerd does."""
    try:
        async with asyncio.timeout(STATE_TIMEOUT):
            return await p.state()
    except errdefs.NotFound:
        raise
    except (errdefs.ErrdefsError, TimeoutError) as e:
        log.error("get state for %s: %s", p.id, e or "timed out")
        return State(id=p.id, exec_id="", pid=0, status=Status.UNKNOWN)


def _process(id_: str, st: State) -> task_pb2.Process:
    out = task_pb2.Process(
        id=id_,
        pid=st.pid,
        status=task_pb2.Status.Value(st.status.name),
        stdin=st.stdin,
        stdout=st.stdout,
        stderr=st.stderr,
        terminal=st.terminal,
        exit_status=st.exit_status,
    )
    ts = _timestamp(st.exited_at)
    if ts is not None:
        out.exited_at.CopyFrom(ts)
    return out


def _delete_response(exit: Exit, id_: str = "") -> tasks_pb2.DeleteResponse:
    resp = tasks_pb2.DeleteResponse(id=id_, pid=exit.pid, exit_status=exit.status)
    ts = _timestamp(exit.exited_at)
    if ts is not None:
        resp.exited_at.CopyFrom(ts)
    return resp


class TasksServicer(tasks_pb2_grpc.TasksServicer):
    def __init__(
        self,
        runtime: Runtime,
        containers: ContainerStore,
        checkpoints: Checkpoints,
    ) -> None:
        self.runtime = runtime
        self.containers = containers
        self.checkpoints = checkpoints

    # --- lookups --------------------------------------------------------------

    async def _container(self, ns: str, id_: str) -> records.Container:
        if not id_:
            raise errdefs.InvalidArgument("container id must not be empty")
        return await self.containers.get(ns, id_)

    async def _task(self, ns: str, id_: str) -> Task:
        await self._container(ns, id_)
        try:
            return self.runtime.get(ns, id_)
        except errdefs.NotFound:
            raise errdefs.NotFound(f"task {id_} not found") from None

    async def _process(self, ns: str, id_: str, exec_id: str) -> Task | Process:
        t = await self._task(ns, id_)
        return await t.process(exec_id) if exec_id else t

    # --- lifecycle -----------------------------------------------------------------

    async def Create(
        self, request: tasks_pb2.CreateTaskRequest, context: Context
    ) -> tasks_pb2.CreateTaskResponse:
        ns = _namespace(context)
        container = await self._container(ns, request.container_id)
        spec = _any(container.spec)
        if spec is None:
            raise errdefs.InvalidArgument(f"container {container.id}: no spec")
        task_options = _request_any(request.options, request.HasField("options"))
        checkpoint = self.checkpoints.restore_path(container.runtime_name, task_options)
        restored = None
        if not checkpoint and request.HasField("checkpoint"):
            restored = await self.checkpoints.unpack(ns, container.id, request.checkpoint)
            checkpoint = restored.path
        created = False
        try:
            runtime, runtime_options = legacy.translate(
                container.runtime_name, _any(container.runtime_options)
            )
            opts = CreateOpts(
                spec=spec.value,
                rootfs=tuple(
                    Mount(m.type, m.source, tuple(m.options), m.target) for m in request.rootfs
                ),
                io=IO(request.stdin, request.stdout, request.stderr, request.terminal),
                checkpoint=checkpoint,
                runtime=request.runtime_path or runtime,
                runtime_options=runtime_options,
                task_options=task_options,
            )
            try:
                self.runtime.get(ns, container.id)
            except errdefs.NotFound:
                pass
            else:
                raise errdefs.AlreadyExists(f"task {container.id}")
            task = await self.runtime.create(ns, container.id, opts)
            created = True
        finally:
            # The shim restores from the directory at Start (runc restore):
            # it stays until the task is deleted.
            if restored is not None and not created:
                await self.checkpoints.release(ns, container.id)
        return tasks_pb2.CreateTaskResponse(container_id=container.id, pid=task.pid)

    async def Start(
        self, request: tasks_pb2.StartRequest, context: Context
    ) -> tasks_pb2.StartResponse:
        p = await self._process(_namespace(context), request.container_id, request.exec_id)
        pid = await p.start()
        return tasks_pb2.StartResponse(pid=pid)

    async def Delete(
        self, request: tasks_pb2.DeleteTaskRequest, context: Context
    ) -> tasks_pb2.DeleteResponse:
        ns = _namespace(context)
        await self._task(ns, request.container_id)
        exit = await self.runtime.delete(ns, request.container_id)
        await self.checkpoints.release(ns, request.container_id)
        return _delete_response(exit)

    async def DeleteProcess(
        self, request: tasks_pb2.DeleteProcessRequest, context: Context
    ) -> tasks_pb2.DeleteResponse:
        if not request.exec_id:
            raise errdefs.InvalidArgument("exec id must not be empty")
        t = await self._task(_namespace(context), request.container_id)
        p = await t.process(request.exec_id)
        exit = await p.delete()
        return _delete_response(exit, request.exec_id)

    # --- state ---------------------------------------------------------------------

    async def Get(self, request: tasks_pb2.GetRequest, context: Context) -> tasks_pb2.GetResponse:
        p = await self._process(_namespace(context), request.container_id, request.exec_id)
        return tasks_pb2.GetResponse(process=_process(p.id, await _state(p)))

    async def List(
        self, request: tasks_pb2.ListTasksRequest, context: Context
    ) -> tasks_pb2.ListTasksResponse:
        ns = _namespace(context)
        resp = tasks_pb2.ListTasksResponse()
        for t in self.runtime.list(ns):
            try:
                st = await _state(t)
            except errdefs.NotFound:
                continue  # deleted meanwhile
            resp.tasks.append(_process(t.id, st))
        return resp

    async def ListPids(
        self, request: tasks_pb2.ListPidsRequest, context: Context
    ) -> tasks_pb2.ListPidsResponse:
        t = await self._task(_namespace(context), request.container_id)
        resp = tasks_pb2.ListPidsResponse()
        for info in await t.pids():
            pi = task_pb2.ProcessInfo(pid=info.pid)
            if info.info is not None:
                pi.info.CopyFrom(any_pb2.Any(type_url=info.info.type_url, value=info.info.value))
            resp.processes.append(pi)
        return resp

    async def Wait(
        self, request: tasks_pb2.WaitRequest, context: Context
    ) -> tasks_pb2.WaitResponse:
        p = await self._process(_namespace(context), request.container_id, request.exec_id)
        exit = await p.wait()
        resp = tasks_pb2.WaitResponse(exit_status=exit.status)
        ts = _timestamp(exit.exited_at)
        if ts is not None:
            resp.exited_at.CopyFrom(ts)
        return resp

    async def Metrics(
        self, request: tasks_pb2.MetricsRequest, context: Context
    ) -> tasks_pb2.MetricsResponse:
        ns = _namespace(context)
        match = filters.parse_all(*request.filters)
        resp = tasks_pb2.MetricsResponse()
        for t in self.runtime.list(ns):
            if not match.match(filters.adapt_task(t.id, t.namespace)):
                continue
            collected = datetime.now(UTC)
            try:
                stats = await t.stats()
            except errdefs.NotFound:
                continue
            except errdefs.ErrdefsError as e:
                log.warning("collecting metrics for %s/%s: %s", ns, t.id, e)
                continue
            m = metrics_pb2.Metric(id=t.id)
            m.timestamp.FromDatetime(collected)
            m.data.CopyFrom(any_pb2.Any(type_url=stats.type_url, value=stats.value))
            resp.metrics.append(m)
        return resp

    # --- control -------------------------------------------------------------------

    async def Kill(self, request: tasks_pb2.KillRequest, context: Context) -> empty_pb2.Empty:
        ns = _namespace(context)
        if request.exec_id:
            # (containerd passes ``all`` to an exec process too; the runtime
            # library's Process.kill signals just that process.)
            p = await self._process(ns, request.container_id, request.exec_id)
            await p.kill(request.signal)
        else:
            t = await self._task(ns, request.container_id)
            await t.kill(request.signal, all=request.all)
        return empty_pb2.Empty()

    async def Exec(
        self, request: tasks_pb2.ExecProcessRequest, context: Context
    ) -> empty_pb2.Empty:
        if not request.exec_id:
            raise errdefs.InvalidArgument("exec id cannot be empty")
        t = await self._task(_namespace(context), request.container_id)
        if not request.HasField("spec"):
            raise errdefs.InvalidArgument("exec spec must not be empty")
        await t.exec(
            request.exec_id,
            ExecOpts(
                AnyValue(request.spec.type_url, request.spec.value),
                IO(request.stdin, request.stdout, request.stderr, request.terminal),
            ),
        )
        return empty_pb2.Empty()

    async def ResizePty(
        self, request: tasks_pb2.ResizePtyRequest, context: Context
    ) -> empty_pb2.Empty:
        p = await self._process(_namespace(context), request.container_id, request.exec_id)
        await p.resize_pty(request.width, request.height)
        return empty_pb2.Empty()

    async def CloseIO(self, request: tasks_pb2.CloseIORequest, context: Context) -> empty_pb2.Empty:
        p = await self._process(_namespace(context), request.container_id, request.exec_id)
        if request.stdin:
            await p.close_io()
        return empty_pb2.Empty()

    async def Pause(self, request: tasks_pb2.PauseTaskRequest, context: Context) -> empty_pb2.Empty:
        t = await self._task(_namespace(context), request.container_id)
        await t.pause()
        return empty_pb2.Empty()

    async def Resume(
        self, request: tasks_pb2.ResumeTaskRequest, context: Context
    ) -> empty_pb2.Empty:
        t = await self._task(_namespace(context), request.container_id)
        await t.resume()
        return empty_pb2.Empty()

    async def Update(
        self, request: tasks_pb2.UpdateTaskRequest, context: Context
    ) -> empty_pb2.Empty:
        t = await self._task(_namespace(context), request.container_id)
        resources = _request_any(request.resources, request.HasField("resources"))
        await t.update(resources, dict(request.annotations))
        return empty_pb2.Empty()

    async def Checkpoint(
        self, request: tasks_pb2.CheckpointTaskRequest, context: Context
    ) -> tasks_pb2.CheckpointTaskResponse:
        ns = _namespace(context)
        container = await self._container(ns, request.container_id)
        t = await self._task(ns, container.id)
        options = _request_any(request.options, request.HasField("options"))
        descriptors = await self.checkpoints.take(ns, _lease(context), container, t, options)
        return tasks_pb2.CheckpointTaskResponse(descriptors=descriptors)

    def register(self, server: grpc.aio.Server) -> None:
        tasks_pb2_grpc.add_TasksServicer_to_server(self, server)
