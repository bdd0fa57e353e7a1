"""Child processes that get none of our descriptors, on any event loop.

asyncio's own loop starts a child with ``subprocess.Popen``, which closes
every descriptor but 0-2 in the child (``close_fds``).  uvloop's
``subprocess_exec`` goes through libuv's ``uv_spawn``, which has no such
step: the child keeps every inheritable descriptor, and uvloop makes the
child's ends of its stdio pipes inheritable before the spawn, so after the
``dup2`` onto 0-2 the originals stay open in the child as well.  A child that
leaves a daemon behind passes them on: ``containerd-shim-runc-v2 start``
forks the long-lived shim, which then holds the write end of ``start``'s own
stdout for as long as it lives, so reading that stdout to its end (what
``communicate`` does) never finishes.  That was ``ctr run`` hanging on
uvloop (issue #14).

So the processes berthd starts go through here: ``subprocess.Popen`` does the
fork and exec (pipes made close-on-exec, everything but 0-2 closed in the
child), the pipes are read and written through the running loop's
``add_reader``/``add_writer``, and the exit is seen through a pidfd.  Nothing
depends on the loop's own subprocess or child-watcher machinery.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from typing import IO

__all__ = ["DEVNULL", "PIPE", "STDOUT", "Process", "start"]

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT

_CHUNK = 64 * 1024


class Process:
    """A child of ours, waited for through a pidfd on the running loop.

    The surface the callers use of ``asyncio.subprocess.Process``: ``pid``,
    ``returncode``, ``wait``, ``communicate``, ``send_signal``,
    ``terminate``, ``kill``.  Made by ``start``, or around a pid of a child
    made by a bare ``os.fork`` (no ``popen``: reaped with ``waitpid``).
    """

    def __init__(self, pid: int, popen: subprocess.Popen[bytes] | None = None) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._popen = popen
        self._done = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._pidfd = os.pidfd_open(pid)
        self._loop.add_reader(self._pidfd, self._reap)

    @property
    def stdin(self) -> IO[bytes] | None:
        return self._popen.stdin if self._popen is not None else None

    @property
    def stdout(self) -> IO[bytes] | None:
        return self._popen.stdout if self._popen is not None else None

    @property
    def stderr(self) -> IO[bytes] | None:
        return self._popen.stderr if self._popen is not None else None

    def _reap(self) -> None:
        if self._popen is not None:
            # Through the Popen, so that it knows the child is gone (it would
            # otherwise try to reap the pid again, later, as a zombie of its own).
            code = self._popen.poll()
            if code is None:
                return
        else:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = self.pid, 255 << 8  # reaped elsewhere: the status is lost
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
        self.returncode = code
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._done.set()

    async def wait(self) -> int:
        await self._done.wait()
        assert self.returncode is not None
        return self.returncode

    async def communicate(self, input: bytes | None = None) -> tuple[bytes | None, bytes | None]:
        """Write ``input`` to stdin and close it, read stdout and stderr to
        their end, wait for the exit; the output of the streams that are
        pipes (None for the others).  Cancelled, it closes our pipe ends; the
        child is the caller's to kill."""
        writer = _write_all(self._loop, self.stdin, input or b"")
        out = _read_all(self._loop, self.stdout)
        err = _read_all(self._loop, self.stderr)
        _, stdout, stderr = await asyncio.gather(writer, out, err)
        await self.wait()
        return stdout, stderr

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def start(
    argv: Sequence[str],
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    start_new_session: bool = False,
) -> Process:
    """Start ``argv`` (PIPE, DEVNULL, STDOUT or None for each stream, as
    ``subprocess``), with none of our descriptors but the stdio it is given.

    Must be called on a running loop.  Raises OSError (FileNotFoundError,
    PermissionError, ...) when the program cannot be executed.
    """
    popen = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=env,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=start_new_session,
        close_fds=True,
        bufsize=0,
    )
    try:
        return Process(popen.pid, popen)
    except BaseException:
        popen.kill()
        popen.wait()
        raise


async def _read_all(loop: asyncio.AbstractEventLoop, f: IO[bytes] | None) -> bytes | None:
    if f is None:
        return None
    fd = f.fileno()
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        try:
            data = os.read(fd, _CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            if not done.done():
                done.set_exception(e)
            return
        if data:
            chunks.append(data)
        elif not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        f.close()
    return b"".join(chunks)


async def _write_all(loop: asyncio.AbstractEventLoop, f: IO[bytes] | None, data: bytes) -> None:
    if f is None:
        return
    fd = f.fileno()
    view = memoryview(data)
    if not view:
        f.close()
        return
    os.set_blocking(fd, False)
    done: asyncio.Future[None] = loop.create_future()
    written = 0

    def writable() -> None:
        nonlocal written
        try:
            written += os.write(fd, view[written:])
        except (BlockingIOError, InterruptedError):
            return
        except (BrokenPipeError, ConnectionResetError):
            # The child does not read its input: as communicate(), not an error.
            written = len(view)
        except OSError as e:
            if not done.done():
                done.set_exception(e)
            return
        if written >= len(view) and not done.done():
            done.set_result(None)

    loop.add_writer(fd, writable)
    try:
        await done
    finally:
        loop.remove_writer(fd)
        with contextlib.suppress(OSError):
            f.close()
