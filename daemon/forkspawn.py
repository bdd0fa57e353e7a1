"""Starting our own plugin processes by fork, sharing the daemon's pages.

A plugin started by exec is a fresh interpreter: a quarter of a second of
imports (grpc, protobuf, the api modules) and some 20 MB of private memory
for what the daemon has already loaded.  When the command is one of this
installation's own console scripts (``berthd-content``, ``-snapshotter``,
``-diff``: a pip script of the daemon's own environment naming a
``services.``/``daemon.`` entry point) and the daemon is still
single-threaded (start-up, before gRPC or any worker thread exists), the
supervisor forks instead: the child is the daemon's child as before, runs in
its own session with SIGTERM as its parent-death signal and stdin on
/dev/null, gets its own environment, argv and command line (so ``ps`` and
/proc/PID/cmdline show the plugin's), and calls the script's entry point.
The module pages stay shared with the daemon (and each other) until written.

Better still, the children are forked before the daemon has loaded the rest
of itself (``park``, called by the CLI once the config says which plugins
will be forked): a parked child waits on a pipe until the supervisor hands it
a plugin to become (``fork``).  Forked that early, a child shares only what
the plugins need, and the pages it writes to (every object it touches: its
reference count, and the bytecode the interpreter specializes in place) hold
fewer of the daemon's own objects beside: measured, the daemon and its three
plugins took 79 MB (sum of PSS) instead of 87 MB.

Anything else, a restart after a crash included (the daemon has threads by
then), is exec'd as before.  ``BERTHD_FORK_PLUGINS=0`` turns forking off.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import importlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from api.errdefs import NotFound
from services.harness import spawn

log = logging.getLogger(__name__)

# Packages whose console scripts may be run by fork.
_OWN = ("services.", "daemon.")
_IMPORT = re.compile(r"^from ([A-Za-z_][\w.]*) import ([A-Za-z_]\w*)$", re.MULTILINE)

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_MM = 35
PR_SET_MM_MAP = 14


def enabled() -> bool:
    return os.environ.get("BERTHD_FORK_PLUGINS", "1") != "0"


def entry_point(executable: str) -> tuple[str, str] | None:
    """(module, function) when ``executable`` is a pip console script of this
    environment for one of our entry points; None otherwise."""
    try:
        with open(executable, "rb") as f:
            head = f.read(2048).decode("utf-8", "replace")
    except OSError:
        return None
    first, _, rest = head.partition("\n")
    if not first.startswith("#!"):
        return None
    interpreter = first[2:].strip().split(" ", 1)[0]
    # The same environment: its interpreter lives beside ours.
    if os.path.dirname(os.path.abspath(interpreter)) != os.path.dirname(
        os.path.abspath(sys.executable)
    ):
        return None
    m = _IMPORT.search(rest)
    if m is None or not m.group(1).startswith(_OWN):
        return None
    if f"sys.exit({m.group(2)}())" not in rest:
        return None
    return m.group(1), m.group(2)


def single_threaded() -> bool:
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def find_executable(name: str) -> str:
    """``name`` on PATH, else beside the running interpreter (an unactivated venv)."""
    if os.sep in name:
        if not os.access(name, os.X_OK):
            raise NotFound(f"{name}: executable not found")
        return name
    dirs = [os.environ.get("PATH", os.defpath), os.path.dirname(sys.executable)]
    if sys.argv and sys.argv[0]:
        dirs.append(os.path.dirname(os.path.abspath(sys.argv[0])))
    found = shutil.which(name, path=os.pathsep.join(dirs))
    if found is None:
        raise NotFound(f"{name}: executable not found in $PATH")
    return found


@dataclass(frozen=True)
class _Parked:
    pid: int
    fd: int  # the pipe it reads its orders from


# The children this process parked.  A property of the process (they were
# forked from its early state), like gc.freeze's permanent generation; the
# supervisor takes them through ``fork``.
_parked: list[_Parked] = []


def can_fork() -> bool:
    """Whether ``fork`` can start a child now: a parked one is waiting, or
    nothing but this thread runs."""
    return bool(_parked) or single_threaded()


def _prepare(modules: Sequence[str]) -> None:
    for module in modules:
        try:
            # Imported here, a plugin's modules are shared with its child
            # instead of loaded into its own pages; and an import in the
            # child writes over shared pages (the import system's caches,
            # the table of interned strings).
            importlib.import_module(module)
        except Exception as e:  # the child will meet it again and report it
            log.debug("fork: importing %s first: %s", module, e)
    # Objects that exist now are the modules' own: keep the collector from
    # writing to them (and so copying their pages) in every child.
    gc.freeze()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def park(count: int, modules: Sequence[str] = ()) -> int:
    """Fork ``count`` children that wait for ``fork`` to tell them which
    plugin to become, importing ``modules`` first.  Returns how many were
    parked: none when forking is off or another thread runs."""
    if count <= 0 or not enabled() or not single_threaded():
        return 0
    _prepare(modules)
    parent = os.getpid()
    for n in range(count):
        try:
            r, w = os.pipe()
            try:
                pid = os.fork()
            except OSError:
                os.close(r)
                os.close(w)
                raise
        except OSError as e:
            # The supervisor will start the rest its usual way.
            log.warning("fork: parked %d of %d children: %s", n, count, e)
            return n
        if pid == 0:
            os.close(w)
            for p in _parked:
                os.close(p.fd)
            _wait_for_orders(r, parent)  # never returns
        os.close(r)
        _parked.append(_Parked(pid, w))
    log.debug("parked %d children for the plugins to come", count)
    return count


def release() -> None:
    """Let the parked children nobody took go (and reap them)."""
    while _parked:
        p = _parked.pop()
        os.close(p.fd)
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(p.pid, 0)


def _send(p: _Parked, order: bytes) -> bool:
    try:
        view = memoryview(order)
        while view:
            view = view[os.write(p.fd, view) :]
        return True
    except OSError as e:
        log.warning("fork: parked child %d is gone (%s): passing it over", p.pid, e)
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(p.pid, 0)
        return False
    finally:
        os.close(p.fd)


def fork(
    entry: tuple[str, str], argv: Sequence[str], env: Mapping[str, str], executable: str
) -> spawn.Process:
    """Start a child that runs ``entry`` with ``argv``/``env`` (see the module
    doc): a parked one when there is, else by forking now."""
    order = json.dumps(
        {"entry": list(entry), "argv": list(argv), "env": dict(env), "executable": executable}
    ).encode()
    while _parked:
        p = _parked.pop(0)
        if _send(p, order):
            return spawn.Process(p.pid)
    _prepare([entry[0]])
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        _child(entry, list(argv), dict(env), executable, parent)  # never returns
    return spawn.Process(pid)


def _wait_for_orders(r: int, parent: int) -> None:
    """A parked child: its orders, then the plugin (or, on EOF, exit)."""
    try:
        # A Ctrl-C at the daemon's terminal is the daemon's (the child gets
        # a session of its own once it has a plugin to run).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _libc().prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)
        chunks = []
        while chunk := os.read(r, 1 << 16):
            chunks.append(chunk)
        os.close(r)
        if not chunks:
            os._exit(0)
        order = json.loads(b"".join(chunks))
        entry = (str(order["entry"][0]), str(order["entry"][1]))
        argv = [str(a) for a in order["argv"]]
        env = {str(k): str(v) for k, v in order["env"].items()}
        executable = str(order["executable"])
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    _child(entry, argv, env, executable, parent)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


class _MMMap(ctypes.Structure):
    _fields_ = [
        ("start_code", ctypes.c_uint64),
        ("end_code", ctypes.c_uint64),
        ("start_data", ctypes.c_uint64),
        ("end_data", ctypes.c_uint64),
        ("start_brk", ctypes.c_uint64),
        ("brk", ctypes.c_uint64),
        ("start_stack", ctypes.c_uint64),
        ("arg_start", ctypes.c_uint64),
        ("arg_end", ctypes.c_uint64),
        ("env_start", ctypes.c_uint64),
        ("env_end", ctypes.c_uint64),
        ("auxv", ctypes.c_void_p),
        ("auxv_size", ctypes.c_uint32),
        ("exe_fd", ctypes.c_uint32),
    ]


# The child's command line must outlive everything: it is never freed.
_cmdline_keep: list[ctypes.Array[ctypes.c_char]] = []


def set_cmdline(argv: Sequence[str]) -> bool:
    """Point the kernel's idea of our argv (/proc/self/cmdline) at ``argv``."""
    libc = _libc()
    data = b"\0".join(a.encode() for a in argv) + b"\0"
    buf = ctypes.create_string_buffer(data, len(data))
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()

    # /proc/PID/stat fields, counted from 1; fields[0] is field 3 (state).
    def field(n: int) -> int:
        return int(fields[n - 3])

    libc.sbrk.restype = ctypes.c_void_p
    brk = libc.sbrk(0)
    mm = _MMMap(
        start_code=field(26),
        end_code=field(27),
        start_data=field(45),
        end_data=field(46),
        start_brk=field(47),
        brk=brk,
        start_stack=field(28),
        arg_start=ctypes.addressof(buf),
        arg_end=ctypes.addressof(buf) + len(data),
        env_start=field(50),
        env_end=field(51),
        auxv=None,
        auxv_size=0,
        exe_fd=0xFFFFFFFF,
    )
    if libc.prctl(PR_SET_MM, PR_SET_MM_MAP, ctypes.byref(mm), ctypes.sizeof(mm), 0) != 0:
        return False
    _cmdline_keep.append(buf)
    name = os.path.basename(argv[0]).encode()[:15]
    libc.prctl(PR_SET_NAME, name, 0, 0, 0)
    return True


def _child(
    entry: tuple[str, str], argv: list[str], env: dict[str, str], executable: str, parent: int
) -> None:
    code = 1
    try:
        # The daemon's signal plumbing is not ours: a SIGTERM sent to the
        # plugin must not reach the daemon's loop through an inherited fd.
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_IGN if sig == signal.SIGPIPE else signal.SIG_DFL)
        libc = _libc()
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        if not set_cmdline([os.path.basename(argv[0]), *argv[1:]]):
            # No way to show the plugin's own command line: be it for real.
            os.execve(executable, [executable, *argv[1:]], env)
        os.environ.clear()
        os.environ.update(env)
        sys.argv = [executable, *argv[1:]]
        asyncio.events._set_running_loop(None)
        asyncio.set_event_loop(None)
        module, func = entry
        main = getattr(importlib.import_module(module), func)
        result = main()
        code = result if isinstance(result, int) else 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
