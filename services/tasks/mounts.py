"""Unmounting what a shim left on a bundle's rootfs (containerd's mount.UnmountRecursive).

The runc shim mounts the Create request's rootfs mounts on
``<bundle>/rootfs`` itself and normally unmounts them on Delete; a shim that
died leaves them behind, so bundle removal unmounts everything at or below a
path before it touches the tree.  Blocking: call it from a thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import time

from services.host import mountpoints

__all__ = ["mountpoints_under", "unmount_recursive"]

_EBUSY_RETRIES = 50
_EBUSY_DELAY = 0.05


class _Libc:
    def __init__(self) -> None:
        self._lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

    def umount(self, target: str) -> None:
        if self._lib.umount2(os.fsencode(target), 0) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"unmount {target}: {os.strerror(e)}")


_libc: _Libc | None = None


def _umount(target: str) -> None:
    global _libc
    if _libc is None:
        _libc = _Libc()
    _libc.umount(target)


def mountpoints_under(path: str) -> list[str]:
    """Mount points at or below ``path`` in this mount namespace, deepest first."""
    prefix = os.path.abspath(path)
    points = [p for p in mountpoints() if p == prefix or p.startswith(prefix + "/")]
    return sorted(points, key=lambda p: p.count("/"), reverse=True)


def unmount_recursive(path: str) -> None:
    """Unmount every mount at or below ``path`` (stacked ones too), deepest first.

    A mount that is busy only because another one sits on it comes off in
    a later pass; one that stays busy fails after some retries (containerd
    retries EBUSY 50 times, 50ms apart).  Raises OSError.
    """
    stuck = 0
    while True:
        points = mountpoints_under(path)
        if not points:
            return
        busy = ""
        for point in points:
            try:
                _umount(point)
            except OSError as e:
                if e.errno in (errno.EINVAL, errno.ENOENT):
                    continue  # hidden by a mount above it, or gone already
                if e.errno != errno.EBUSY:
                    raise
                busy = point
        if mountpoints_under(path) == points:
            stuck += 1
            if stuck >= _EBUSY_RETRIES:
                raise OSError(
                    errno.EBUSY,
                    f"failed to unmount target {busy or points[0]}: device or resource busy",
                )
            time.sleep(_EBUSY_DELAY)
        else:
            stuck = 0
