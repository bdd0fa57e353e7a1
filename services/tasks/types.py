"""Plain values the runtime v2 backend takes and returns.

They mirror containerd's ``runtime`` package (CreateOpts, IO, Exit, State,
ProcessInfo); the shim edge (``shimclient``) converts them to and from the
``containerd.task.v2`` wire messages.  Opaque runtime-specific payloads (runc
options, an exec's process spec, stats, resources) stay packed as
:class:`AnyValue`: the backend passes them through without looking inside.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from api.types import Mount

__all__ = [
    "DEFAULT_RUNTIME",
    "IO",
    "AnyValue",
    "ConnectInfo",
    "CreateOpts",
    "ExecOpts",
    "Exit",
    "ProcessInfo",
    "State",
    "Status",
]

DEFAULT_RUNTIME = "io.containerd.runc.v2"


class Status(enum.IntEnum):
    """Lifecycle state of a task or process (containerd.v1.types.Status numbers)."""

    UNKNOWN = 0
    CREATED = 1
    RUNNING = 2
    STOPPED = 3
    PAUSED = 4
    PAUSING = 5


@dataclass(frozen=True)
class AnyValue:
    """A packed ``google.protobuf.Any`` carried through untouched."""

    type_url: str
    value: bytes = b""


@dataclass(frozen=True)
class IO:
    """Paths (usually FIFOs or files) the shim wires to a process's stdio."""

    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False


@dataclass(frozen=True)
class CreateOpts:
    """What a new task is made of.

    ``spec`` is the container's OCI runtime spec as JSON bytes (the value of
    the container's spec Any); it becomes the bundle's config.json.
    ``rootfs`` are the mounts the shim assembles on ``<bundle>/rootfs``
    (usually a snapshot's mounts); empty means the spec's root path is used
    as is.  ``runtime`` is a runtime name (``io.containerd.runc.v2``) or an
    absolute path to a shim binary.  ``task_options`` win over
    ``runtime_options``, as in containerd; the chosen one goes to the shim's
    ``start`` on stdin and into the Create request.
    """

    spec: bytes
    rootfs: tuple[Mount, ...] = ()
    io: IO = IO()
    checkpoint: str = ""
    parent_checkpoint: str = ""
    runtime: str = DEFAULT_RUNTIME
    runtime_options: AnyValue | None = None
    task_options: AnyValue | None = None

    @property
    def options(self) -> AnyValue | None:
        """The options the shim gets: task options when set, else runtime options."""
        if self.task_options is not None and self.task_options.value:
            return self.task_options
        return self.runtime_options


@dataclass(frozen=True)
class ExecOpts:
    """An extra process: its spec (an OCI Process as JSON for runc) and stdio."""

    spec: AnyValue
    io: IO = IO()


@dataclass(frozen=True)
class Exit:
    """How a process ended.  ``pid`` is 0 when it is not known."""

    pid: int
    status: int
    exited_at: datetime


@dataclass(frozen=True)
class State:
    """A process's state as its shim reports it (exit fields once STOPPED)."""

    id: str
    exec_id: str
    pid: int
    status: Status
    bundle: str = ""
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False
    exit_status: int = 0
    exited_at: datetime | None = None


@dataclass(frozen=True)
class ProcessInfo:
    """One process of a task; ``info`` is runtime detail (runc: its exec id)."""

    pid: int
    info: AnyValue | None = None


@dataclass(frozen=True)
class ConnectInfo:
    """The shim's answer to Connect."""

    shim_pid: int
    task_pid: int
    version: str
