"""Which mounts the differ touches: only those under the roots it serves.

Diff and Apply take mounts from the caller, and the differ runs as root:
containerd (v1.6.20 services/diff) mounts whatever it is given, so a caller
could diff another namespace's snapshot, or the host's /etc, into a layer it
can read, or apply a layer into a snapshot it must not change.  This differ
accepts a mount only when every path it names lies under one of its allowed
roots (``--allowed-root``; the snapshotters' roots):

- an overlay's ``lowerdir`` (each of them), ``upperdir`` and ``workdir``
  (its source is only a label);
- the source of any other mount (a bind mount of a snapshot directory, a
  block device of a devmapper snapshotter under an allowed /dev path ...).

Each path is resolved (symlinks and ``..``) and opened with ``O_PATH``; the
opened object's real path is what is checked, and the mount is rewritten to
name that object as ``/proc/self/fd/N``.  What was checked is what gets
mounted: replacing a component by a symlink afterwards changes nothing.
Anything else is PermissionDenied naming the path; a path under a root that
cannot be opened is InvalidArgument.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import replace

from api import errdefs
from services.diff.differ import Mount

# overlay options that name directories
_OVERLAY_DIRS = ("lowerdir=", "upperdir=", "workdir=")
PROC_FD = "/proc/self/fd/"


class MountGuard:
    """``MountGuard(roots)``: ``async with guard.pinned(mounts) as safe:`` checks
    ``mounts`` and holds what they name open for the duration of the block."""

    def __init__(self, roots: Iterable[str]) -> None:
        self._roots = tuple(os.path.abspath(r) for r in roots)
        if not self._roots:
            raise ValueError("a MountGuard needs at least one allowed root")

    @property
    def roots(self) -> tuple[str, ...]:
        return self._roots

    def _resolved_roots(self) -> list[str]:
        # Resolved at each use: a snapshotter may create (or move) its root
        # after the differ started.
        return [os.path.realpath(r) for r in self._roots]

    @contextlib.asynccontextmanager
    async def pinned(self, mounts: Sequence[Mount]) -> AsyncIterator[list[Mount]]:
        fds: list[int] = []
        try:
            safe = await asyncio.to_thread(self._pin_all, mounts, fds)
            yield safe
        finally:
            for fd in fds:
                os.close(fd)

    def _pin_all(self, mounts: Sequence[Mount], fds: list[int]) -> list[Mount]:
        roots = self._resolved_roots()
        return [self._pin_mount(m, roots, fds) for m in mounts]

    def _pin_mount(self, m: Mount, roots: list[str], fds: list[int]) -> Mount:
        if m.type != "overlay":
            return replace(m, source=self._pin(m.source, "mount source", roots, fds))
        options = []
        for option in m.options:
            key = next((k for k in _OVERLAY_DIRS if option.startswith(k)), None)
            if key is None:
                options.append(option)
                continue
            what = f"overlay {key[:-1]}"
            paths = option[len(key) :].split(":") if key == "lowerdir=" else [option[len(key) :]]
            pinned = [self._pin(p, what, roots, fds) for p in paths]
            options.append(key + ":".join(pinned))
        return replace(m, options=tuple(options))

    def _pin(self, path: str, what: str, roots: list[str], fds: list[int]) -> str:
        """``path`` opened and checked; answers the /proc path of the opened object."""
        if not os.path.isabs(path) or not _under(os.path.realpath(path), roots):
            raise self._refuse(what, path)
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError as e:
            raise errdefs.InvalidArgument(f"{what} {path!r}: {e.strerror}") from None
        fds.append(fd)
        # The object opened, not the name looked at: a symlink planted since
        # realpath() is caught here.
        if not _under(os.readlink(f"{PROC_FD}{fd}"), roots):
            raise self._refuse(what, path)
        # "/." keeps a directory a directory for calls that refuse to follow
        # a final symlink (O_NOFOLLOW), which /proc/self/fd/N is.
        suffix = "/." if stat.S_ISDIR(os.fstat(fd).st_mode) else ""
        return f"{PROC_FD}{fd}{suffix}"

    def _refuse(self, what: str, path: str) -> errdefs.PermissionDenied:
        return errdefs.PermissionDenied(
            f"{what} {path!r} is outside the roots this differ serves ({', '.join(self._roots)})"
        )


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def pinned_fds(options: Iterable[str]) -> list[int]:
    """The descriptors a rewritten mount's options name (for a child process
    that performs the mount: it must inherit them)."""
    out = set()
    for option in options:
        for part in option.replace(",", ":").replace("=", ":").split(":"):
            if part.startswith(PROC_FD):
                number = part[len(PROC_FD) :].split("/", 1)[0]
                if number.isdigit():
                    out.add(int(number))
    return sorted(out)
