"""The contract of the runtime v2 backend (containerd's runtime.PlatformRuntime, Task, ExecProcess).

Vocabulary: a *task* is a container's init process as run by one shim; a
*process* is an extra (exec) process inside a task, named by an exec id.
Tasks live in namespaces; ids are unique per namespace.  Errors are
``api.errdefs`` classes; the Tasks gRPC service translates them at its edge.

Calls that reach the shim raise what the shim answered (NotFound for an
unknown exec id, FailedPrecondition for a wrong state, ...), and
Unavailable when the shim's connection is lost mid-call.  After a shim died
the task stays listed as STOPPED (with the exit the cleanup found) until it
is deleted; calls that need the shim raise NotFound.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from services.tasks.types import (
    AnyValue,
    ConnectInfo,
    CreateOpts,
    ExecOpts,
    Exit,
    ProcessInfo,
    State,
)

__all__ = ["Process", "Runtime", "Task"]


class Process(Protocol):
    """An exec process of a task."""

    @property
    def id(self) -> str:
        """The exec id."""
        ...

    async def start(self) -> int:
        """Run the process; returns its pid.  NotFound, FailedPrecondition."""
        ...

    async def state(self) -> State:
        """NotFound when the process (or its shim) is gone."""
        ...

    async def kill(self, signal: int) -> None:
        """Signal the process.  NotFound once it has exited."""
        ...

    async def resize_pty(self, width: int, height: int) -> None:
        """NotFound; FailedPrecondition when it has no terminal."""
        ...

    async def close_io(self) -> None:
        """Close the process's stdin.  NotFound."""
        ...

    async def wait(self) -> Exit:
        """Block until the process exits.  NotFound; NotFound too when the shim dies meanwhile."""
        ...

    async def delete(self) -> Exit:
        """Reap the exited process.  NotFound; FailedPrecondition while it runs."""
        ...


class Task(Protocol):
    """A container's init process, run by its own shim."""

    @property
    def id(self) -> str: ...

    @property
    def namespace(self) -> str: ...

    @property
    def bundle(self) -> str:
        """The bundle directory."""
        ...

    @property
    def runtime(self) -> str:
        """The shim binary's absolute path."""
        ...

    @property
    def pid(self) -> int:
        """The init process's pid as last learned (Create, Start or reconnect); 0 if unknown."""
        ...

    async def connect(self) -> ConnectInfo:
        """The shim's pid, the task's pid, the shim's version.  NotFound after shim death."""
        ...

    async def start(self) -> int:
        """Run the init process; returns its pid.  FailedPrecondition when not CREATED."""
        ...

    async def state(self) -> State:
        """Current state; STOPPED with the exit once the shim died."""
        ...

    async def kill(self, signal: int, *, all: bool = False) -> None:
        """Signal the init process (``all``: every process).  NotFound once stopped."""
        ...

    async def pause(self) -> None:
        """Freeze the container.  FailedPrecondition unless RUNNING."""
        ...

    async def resume(self) -> None:
        """Thaw the container.  FailedPrecondition unless PAUSED."""
        ...

    async def pids(self) -> list[ProcessInfo]:
        """Every process in the container.  NotFound after shim death."""
        ...

    async def resize_pty(self, width: int, height: int) -> None:
        """FailedPrecondition when the task has no terminal."""
        ...

    async def close_io(self) -> None:
        """Close the init process's stdin."""
        ...

    async def wait(self) -> Exit:
        """Block until the init process exits (or its shim dies: the cleanup's exit)."""
        ...

    async def checkpoint(self, path: str, options: AnyValue | None = None) -> None:
        """Write a checkpoint image to ``path``.  NotImplemented without criu."""
        ...

    async def update(
        self, resources: AnyValue | None, annotations: Mapping[str, str] | None = None
    ) -> None:
        """Change resources (an OCI LinuxResources for runc).  InvalidArgument."""
        ...

    async def stats(self) -> AnyValue:
        """Runtime metrics (cgroup v1/v2 Metrics for runc).  NotFound."""
        ...

    async def exec(self, exec_id: str, opts: ExecOpts) -> Process:
        """Register an exec process (Start runs it).

        InvalidArgument for a bad exec id, AlreadyExists when it is taken,
        FailedPrecondition when the task is not running.
        """
        ...

    async def process(self, exec_id: str) -> Process:
        """An existing exec process.  NotFound."""
        ...

    async def shutdown(self, *, now: bool = False) -> None:
        """Ask the shim to exit; a closed connection counts as success."""
        ...


class Runtime(Protocol):
    """Creates, finds and deletes tasks (containerd's TaskManager over its ShimManager)."""

    async def create(self, namespace: str, id: str, opts: CreateOpts) -> Task:
        """Bundle, shim start, ttrpc Create.  On any failure nothing is left behind.

        InvalidArgument for a bad namespace, id or spec; AlreadyExists when
        the task exists; Unknown naming the binary when the runtime is not
        installed, or with the shim's output when it fails to start; what the
        shim's Create answered otherwise.
        """
        ...

    def get(self, namespace: str, id: str) -> Task:
        """NotFound when there is no such task."""
        ...

    def list(self, namespace: str | None = None) -> Sequence[Task]:
        """Tasks of ``namespace`` (every namespace when None)."""
        ...

    async def delete(self, namespace: str, id: str) -> Exit:
        """Shim Delete, Shutdown, bundle removal; the task is gone afterwards.

        NotFound when there is no such task.  When the shim refuses (the
        runc shim answers Unknown "cannot delete a running process") the
        error is raised and the task stays.  A task whose shim died returns
        the exit its cleanup recorded.
        """
        ...

    async def load(self) -> None:
        """Reconnect to the shims of a previous run; clean up after dead ones."""
        ...

    async def close(self) -> None:
        """Disconnect from every shim without stopping any (they outlive the daemon)."""
        ...
