"""The shim's log FIFO (``<bundle>/log``), drained into the daemon's log.

A shim opens ``log`` in its bundle write-only at start-up and writes its
logrus output there; the open blocks until a reader exists and a full FIFO
stalls the shim, so the daemon creates the FIFO and keeps a reader on it for
the shim's whole life (containerd's openShimLog: O_RDWR|O_CREAT|O_NONBLOCK,
so the reader never sees end-of-file while the shim restarts its writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import stat

__all__ = ["ShimLog"]

log = logging.getLogger("services.tasks.shim")

_SERIOUS = re.compile(rb"level=(warn|warning|error|fatal|panic)\b")

_MAX_LINE = 64 * 1024


class ShimLog:
    """Reads one shim's log FIFO on the event loop and logs each line."""

    def __init__(self, path: str, namespace: str, id: str) -> None:
        self._path = path
        self._namespace = namespace
        self._id = id
        self._fd = -1
        self._pending = b""
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> None:
        """Create the FIFO if needed and start reading it.  Raises OSError."""
        try:
            os.mkfifo(self._path, 0o700)
        except FileExistsError:
            if not stat.S_ISFIFO(os.lstat(self._path).st_mode):
                raise OSError(f"{self._path} exists and is not a FIFO") from None
        self._fd = os.open(self._path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        except OSError as e:
            log.warning("shim log %s/%s: %s", self._namespace, self._id, e)
            self.close()
            return
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        if len(self._pending) > _MAX_LINE:
            lines.append(self._pending)
            self._pending = b""
        for line in lines:
            if line.strip():
                # Shims log at info for routine start-up; their warnings and
                # errors are what an operator needs to see.
                level = logging.WARNING if _SERIOUS.search(line) else logging.DEBUG
                log.log(
                    level,
                    "shim %s/%s: %s",
                    self._namespace,
                    self._id,
                    line.decode(errors="replace").rstrip(),
                )

    def close(self) -> None:
        """Stop reading and close the FIFO (idempotent)."""
        if self._fd < 0:
            return
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = -1
