"""Runtime v2 backend: tasks run by shims such as containerd-shim-runc-v2.

A plain library (no gRPC server): the daemon's Tasks service is built on
:class:`ShimManager` through the :class:`Runtime`, :class:`Task` and
:class:`Process` contracts in ``runtime.py``.
"""

from services.tasks.binary import RuntimeResolver, binary_name
from services.tasks.manager import ShimManager, Timeouts
from services.tasks.runtime import Process, Runtime, Task
from services.tasks.types import (
    DEFAULT_RUNTIME,
    IO,
    AnyValue,
    ConnectInfo,
    CreateOpts,
    ExecOpts,
    Exit,
    ProcessInfo,
    State,
    Status,
)

__all__ = [
    "DEFAULT_RUNTIME",
    "IO",
    "AnyValue",
    "ConnectInfo",
    "CreateOpts",
    "ExecOpts",
    "Exit",
    "Process",
    "ProcessInfo",
    "Runtime",
    "RuntimeResolver",
    "ShimManager",
    "State",
    "Status",
    "Task",
    "Timeouts",
    "binary_name",
]
