"""Mounting containerd Mount lists on temporary directories, and always unmounting.

Follows containerd's ``mount`` package (v1.6.20:mount/mount_linux.go,
temp.go, mount.go): fstab-style options become mount(2) flags and data; a
read-only bind is remounted read-only; an overlay whose options exceed a page
is mounted from the lower directories' common parent with relative paths;
``temp_mount`` unmounts everything stacked on the directory (retrying while
busy) and only ``rmdir``s it, so a failed unmount can never delete data
through the mount.  Temporary directories live under ``<root>/tmpmounts``,
which ``prepare`` empties at start-up.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence

from api import errdefs
from services.diff.allowed import pinned_fds
from services.diff.differ import Mount
from services.host import mountpoints as mountpoints

log = logging.getLogger(__name__)

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
_PROPAGATION = MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE

# option -> (clear, flag): containerd's parseMountOptions table.
_FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, MS_SYNCHRONOUS),
    "atime": (True, MS_NOATIME),
    "bind": (False, MS_BIND),
    "defaults": (False, 0),
    "dev": (True, MS_NODEV),
    "diratime": (True, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC),
    "exec": (True, MS_NOEXEC),
    "mand": (False, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME),
    "nodev": (False, MS_NODEV),
    "nodiratime": (False, MS_NODIRATIME),
    "noexec": (False, MS_NOEXEC),
    "nomand": (True, MS_MANDLOCK),
    "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "nosuid": (False, MS_NOSUID),
    "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME),
    "remount": (False, MS_REMOUNT),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "strictatime": (False, MS_STRICTATIME),
    "suid": (True, MS_NOSUID),
    "sync": (False, MS_SYNCHRONOUS),
}

_PAGE = os.sysconf("SC_PAGE_SIZE")


class _Libc:
    """mount(2), umount2(2) and syncfs(2) through ctypes; failures raise OSError."""

    def __init__(self) -> None:
        self._lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._lib.mount.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
        ]
        self._lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        self._lib.syncfs.argtypes = [ctypes.c_int]

    @staticmethod
    def _check(rc: int, what: str) -> None:
        if rc != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"{what}: {os.strerror(e)}")

    def mount(self, source: str, target: str, fstype: str, flags: int, data: str) -> None:
        rc = self._lib.mount(
            os.fsencode(source) if source else None,
            os.fsencode(target),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        )
        self._check(rc, f"mount {target}")

    def umount(self, target: str, flags: int = 0) -> None:
        self._check(self._lib.umount2(os.fsencode(target), flags), f"unmount {target}")

    def syncfs(self, fd: int) -> None:
        self._check(self._lib.syncfs(fd), "syncfs")


def parse_options(options: Sequence[str]) -> tuple[int, str]:
    """mount(2) flags and the data string for fstab-style ``options``.

    Raises InvalidArgument for loop devices, which this differ does not set up.
    """
    flags = 0
    data: list[str] = []
    for option in options:
        known = _FLAGS.get(option)
        if known is not None and known[1] != 0:
            clear, flag = known
            flags = flags & ~flag if clear else flags | flag
        elif option == "loop":
            raise errdefs.InvalidArgument("mount option 'loop' is not supported by this differ")
        elif known is None:
            data.append(option)
    return flags, ",".join(data)


def readonly(mounts: Sequence[Mount]) -> list[Mount]:
    """``mounts`` made read-only: an overlay's upper joins its lowers, others get "ro"."""
    out = []
    for m in mounts:
        if m.type == "overlay":
            upper = ""
            opts: list[str] = []
            for o in m.options:
                if o.startswith("upperdir="):
                    upper = o[len("upperdir=") :]
                elif not o.startswith("workdir="):
                    opts.append(o)
            if upper:
                opts = [
                    f"lowerdir={upper}:{o[len('lowerdir=') :]}" if o.startswith("lowerdir=") else o
                    for o in opts
                ]
            out.append(Mount(m.type, m.source, tuple(opts), m.target))
        else:
            opts = [o for o in m.options if o not in ("rw", "ro")] + ["ro"]
            out.append(Mount(m.type, m.source, tuple(opts), m.target))
    return out


def _compact_lowerdirs(options: Sequence[str]) -> tuple[str, list[str]]:
    """containerd's compactLowerdirOption: lowerdirs relative to their common parent."""
    index = next((i for i, o in enumerate(options) if o.startswith("lowerdir=")), -1)
    if index < 0:
        return "", list(options)
    dirs = options[index][len("lowerdir=") :].split(":")
    if len(dirs) == 1:
        return "", list(options)
    # Snapshot ids are digits: step back to the directory that holds them.
    common = os.path.dirname(os.path.commonpath(dirs))
    if common in ("", "/"):
        return "", list(options)
    common += "/"
    out = [o for i, o in enumerate(options) if i != index]
    out.append("lowerdir=" + ":".join(d[len(common) :] for d in dirs))
    return common, out


class Mounter:
    """Temporary mounts under ``<root>/tmpmounts``."""

    def __init__(self, root: str) -> None:
        self.location = os.path.join(os.path.abspath(root), "tmpmounts")
        self._libc = _Libc()

    def prepare(self) -> None:
        """Create the location; unmount and remove what a previous run left there."""
        os.makedirs(self.location, mode=0o700, exist_ok=True)
        leftovers = sorted(
            (p for p in mountpoints() if p.startswith(self.location + "/")),
            key=len,
            reverse=True,
        )
        for path in leftovers:
            try:
                self.unmount_all(path)
            except OSError as e:
                log.warning("could not unmount leftover %s: %s", path, e)
        for name in os.listdir(self.location):
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(self.location, name))

    def mount(self, m: Mount, target: str) -> None:
        """Perform one mount on ``target``; InvalidArgument for what is not supported."""
        if m.type.startswith(("fuse.", "fuse3.")):
            raise errdefs.InvalidArgument(f"mount type {m.type!r} is not supported by this differ")
        chdir = ""
        options = list(m.options)
        if m.type == "overlay" and sum(len(o) for o in options) >= _PAGE - 512:
            chdir, options = _compact_lowerdirs(options)
        flags, data = parse_options(options)
        if len(data) > _PAGE:
            raise errdefs.InvalidArgument("mount options are too long")
        plain = flags & ~_PROPAGATION
        if flags & MS_REMOUNT == 0 or data:
            if chdir:
                self._mount_in(chdir, m, target, plain, data)
            else:
                self._libc.mount(m.source, target, m.type, plain, data)
        if flags & _PROPAGATION:
            self._libc.mount("", target, "", flags & (_PROPAGATION | MS_REC | MS_SILENT), "")
        if plain & (MS_BIND | MS_RDONLY) == MS_BIND | MS_RDONLY:
            # A bind mount ignores MS_RDONLY until it is remounted.
            self._libc.mount("", target, "", plain | MS_REMOUNT, "")

    def _mount_in(self, cwd: str, m: Mount, target: str, flags: int, data: str) -> None:
        # Relative lowerdirs resolve from ``cwd``, and chdir is process-wide:
        # a child process does this mount (containerd forks for it too).
        opts = [data] if data else []
        opts += [name for name, (clear, f) in _FLAGS.items() if not clear and f and flags & f == f]
        argv = ["mount", "-t", m.type, "-o", ",".join(opts), m.source, target]
        # Directories the MountGuard pinned are named /proc/self/fd/N: the
        # child needs the same descriptors (and, from cwd /proc/self, its own
        # /proc entry names them).
        proc = subprocess.run(
            argv,
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
            pass_fds=pinned_fds(m.options),
        )
        if proc.returncode != 0:
            raise OSError(errno.EINVAL, f"mount {target}: {proc.stderr.strip()}")

    def unmount_all(self, target: str) -> None:
        """Unmount everything stacked on ``target``, retrying while it is busy."""
        if not os.path.exists(target):
            return
        while True:
            for _ in range(50):
                try:
                    self._libc.umount(target)
                    break
                except OSError as e:
                    if e.errno == errno.EINVAL:
                        return  # not a mount point any more
                    if e.errno != errno.EBUSY:
                        raise
                    time.sleep(0.05)
            else:
                raise OSError(errno.EBUSY, f"failed to unmount target {target}: busy")

    @contextlib.contextmanager
    def temp_mount(self, mounts: Sequence[Mount], *, read_only: bool = False) -> Iterator[str]:
        """Mount ``mounts`` in order on a fresh directory; always unmount and rmdir it.

        Raises InvalidArgument for mounts this differ cannot perform and
        Unknown when mount(2) or umount(2) fails.
        """
        if read_only:
            mounts = readonly(mounts)
        os.makedirs(self.location, mode=0o700, exist_ok=True)
        root = tempfile.mkdtemp(prefix="berthd-mount", dir=self.location)
        ok = False
        try:
            try:
                for m in mounts:
                    self.mount(m, root)
            except OSError as e:
                raise errdefs.Unknown(f"failed to mount {root}: {e.strerror or e}") from None
            yield root
            ok = True
        finally:
            try:
                self.unmount_all(root)
            except OSError as e:
                if ok:
                    raise errdefs.Unknown(f"failed to unmount {root}: {e.strerror or e}") from None
                log.error("failed to unmount %s: %s", root, e)
            else:
                # rmdir, never rmtree: should anything still be mounted, it stays intact.
                try:
                    os.rmdir(root)
                except OSError as e:
                    log.error("failed to remove mount temp dir %s: %s", root, e)

    def syncfs(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self._libc.syncfs(fd)
        finally:
            os.close(fd)
