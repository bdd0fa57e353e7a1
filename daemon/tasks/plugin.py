"""The task plugins, containerd's types and ids:

- ``io.containerd.runtime.v2 task``: the shim manager (``services.tasks``),
  its state under ``<state>/io.containerd.runtime.v2.task`` and work dirs
  under the root; at init it loads the bundles a previous daemon left and
  reconnects to their live shims (running containers survive a restart);
  closed at shutdown without stopping the shims;
- ``io.containerd.service.v1 tasks-service`` and ``io.containerd.grpc.v1
  tasks``: the Tasks service over it and the metadata layer, which also
  refuses to delete a container while it has a task; the running tasks'
  cgroup figures are exported as containerd's ``container_*`` families.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf import any_pb2

from api import errdefs
from daemon import registry
from daemon.capabilities import GrpcService
from daemon.events.exchange import Exchange
from daemon.metadata.services import MetadataServices
from daemon.metrics import DaemonMetrics
from daemon.registry import InitContext, Registration
from daemon.tasks import metrics as task_metrics
from daemon.tasks.checkpoint import Checkpoints
from daemon.tasks.service import SERVICE_NAME, STATE_TIMEOUT, TasksServicer
from services.tasks.manager import ShimManager
from services.tasks.runtime import Task
from services.tasks.types import Status

log = logging.getLogger(__name__)

RUNTIME_ID = "task"


@dataclass(frozen=True)
class RuntimeConfig:
    """``[plugins."io.containerd.runtime.v2.task"]`` (containerd's keys)."""

    platforms: tuple[str, ...] = ()
    sched_core: bool = False


def publish_binary() -> str:
    """The daemon's own executable, for shims' ``-publish-binary``."""
    beside = os.path.join(os.path.dirname(sys.executable), "berthd")
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which("berthd") or beside


class TaskRuntime(ShimManager):
    """The shim manager as a plugin instance (closed at shutdown)."""


async def _init_runtime(ic: InitContext) -> TaskRuntime:
    cfg: RuntimeConfig = ic.config
    md = ic.plugins.get(registry.METADATA)
    assert isinstance(md, MetadataServices)

    async def runtime_of(namespace: str, id_: str) -> str | None:
        try:
            return (await md.containers.get(namespace, id_)).runtime_name
        except errdefs.NotFound:
            return None

    exchange = ic.plugins.get(registry.EVENT)
    assert isinstance(exchange, Exchange)
    manager = TaskRuntime(
        ic.root,
        ic.state,
        ic.address,
        ic.ttrpc_address,
        publish_binary(),
        exchange,
        sched_core=cfg.sched_core,
        runtime_lookup=runtime_of,
    )
    await manager.load()
    ic.meta.exports["root"] = ic.root
    ic.meta.exports["state"] = ic.state
    return manager


class _Stats:
    """The running tasks' stats, for the ``container_*`` families."""

    def __init__(self, runtime: TaskRuntime, md: MetadataServices) -> None:
        self.runtime = runtime
        self.md = md

    async def running_tasks(self) -> Sequence[task_metrics.TaskRef]:
        async def one(t: Task) -> task_metrics.TaskRef | None:
            # Asked concurrently and bounded: one stuck shim must not take
            # every container's families off the page.
            try:
                async with asyncio.timeout(STATE_TIMEOUT):
                    if (await t.state()).status != Status.RUNNING:
                        return None
                    runtime = (await self.md.containers.get(t.namespace, t.id)).runtime_name
            except (errdefs.ErrdefsError, TimeoutError):
                return None
            return task_metrics.TaskRef(t.namespace, t.id, {"runtime": runtime})

        found = await asyncio.gather(*(one(t) for t in self.runtime.list()))
        return [ref for ref in found if ref is not None]

    async def stats(self, task: task_metrics.TaskRef) -> any_pb2.Any:
        v = await self.runtime.get(task.namespace, task.container_id).stats()
        return any_pb2.Any(type_url=v.type_url, value=v.value)


async def _init_service(ic: InitContext) -> TasksServicer:
    runtime = ic.plugins.get_by_id(registry.RUNTIME_V2, RUNTIME_ID)
    assert isinstance(runtime, TaskRuntime)
    md = ic.plugins.get(registry.METADATA)
    assert isinstance(md, MetadataServices)

    def refuse_with_task(namespace: str, id_: str) -> None:
        try:
            runtime.get(namespace, id_)
        except errdefs.NotFound:
            return
        raise errdefs.FailedPrecondition(f"cannot delete container {id_}: it has a task")

    md.container_delete_guards.append(refuse_with_task)
    metrics = ic.optional(DaemonMetrics)
    if metrics is not None:
        task_metrics.register(metrics.registry, _Stats(runtime, md))
    scratch = os.path.join(ic.root, "checkpoints")
    return TasksServicer(runtime, md.containers, Checkpoints(md.content, scratch))


async def _init_grpc(ic: InitContext) -> GrpcService:
    servicer = ic.plugins.get_by_id(registry.SERVICE, "tasks-service")
    assert isinstance(servicer, TasksServicer)
    return GrpcService((SERVICE_NAME,), servicer.register)


REGISTRATIONS = (
    Registration(
        registry.RUNTIME_V2,
        RUNTIME_ID,
        _init_runtime,
        (registry.METADATA, registry.EVENT),
        RuntimeConfig,
    ),
    Registration(
        registry.SERVICE,
        "tasks-service",
        _init_service,
        (registry.RUNTIME_V2, registry.METADATA),
    ),
    Registration(registry.GRPC, "tasks", _init_grpc, (registry.SERVICE,)),
)
