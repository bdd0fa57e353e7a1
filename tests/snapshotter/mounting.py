"""Mount what a snapshotter returns, with the real mount(8), as containerd's mount.All would.

Overlay options longer than a page are shortened the way containerd does
(mount/mount_linux.go ``compactLowerdirOption``): the lower directories are
given relative to their common parent and mount(8) runs from there.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from services.snapshotter.snapshotter import Mount

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _compact_lowerdir(options: Sequence[str]) -> tuple[str | None, list[str]]:
    """(directory to run mount from, options) with lowerdirs relative when that helps."""
    opts = list(options)
    if len(",".join(opts)) < PAGE_SIZE:
        return None, opts
    idx = next((i for i, o in enumerate(opts) if o.startswith("lowerdir=")), -1)
    if idx < 0:
        return None, opts
    lowers = opts[idx][len("lowerdir=") :].split(":")
    if len(lowers) < 2:
        return None, opts
    base = os.path.commonpath(lowers)
    opts[idx] = "lowerdir=" + ":".join(os.path.relpath(lower, base) for lower in lowers)
    return base, opts


def mount(m: Mount, target: Path) -> None:
    where = target / m.target.lstrip("/") if m.target else target
    cwd, options = _compact_lowerdir(m.options)
    argv = ["mount"]
    if m.type not in ("bind", "rbind", ""):
        argv += ["-t", m.type]
    if options:
        argv += ["-o", ",".join(options)]
    argv += [m.source, str(where)]
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise OSError(f"{' '.join(argv)[:300]}: {proc.stderr.strip()}")


def mount_all(mounts: Sequence[Mount], target: Path) -> None:
    for m in mounts:
        mount(m, target)


def unmount(target: Path, *, attempts: int = 50) -> None:
    """Unmount everything mounted at ``target`` (retrying while busy)."""
    for _ in range(attempts):
        proc = subprocess.run(
            ["umount", "-R", str(target)], capture_output=True, text=True, check=False
        )
        if proc.returncode == 0 or "not mounted" in proc.stderr:
            return
        time.sleep(0.05)
    raise OSError(f"umount {target}: {proc.stderr.strip()}")


def is_mounted(target: Path) -> bool:
    real = os.path.realpath(target)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == real for line in f)
