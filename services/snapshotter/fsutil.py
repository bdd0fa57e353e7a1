"""Filesystem work the local backends share: disk usage, tree copies, kernel probes.

All functions block; backends call them from worker threads.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from services.host import in_user_namespace
from services.snapshotter.snapshotter import Usage

log = logging.getLogger(__name__)

_BLOCK = 512  # st_blocks unit
_TMPFS_MAGIC = 0x01021994


def disk_usage(root: str | Path) -> Usage:
    """Bytes allocated and inodes used below ``root`` (hard links counted once).

    Same accounting as containerd's ``fs.DiskUsage`` (continuity du_unix.go):
    allocated blocks, not apparent sizes, and the root itself counts.
    """
    seen: set[tuple[int, int]] = set()
    size = 0
    pending = [os.fspath(root)]
    first = True
    while pending:
        path = pending.pop()
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if first:
                raise
            continue
        first = False
        ino = (st.st_dev, st.st_ino)
        if ino not in seen:
            seen.add(ino)
            size += st.st_blocks * _BLOCK
        if stat.S_ISDIR(st.st_mode):
            with os.scandir(path) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                        continue
                    est = entry.stat(follow_symlinks=False)
                    key = (est.st_dev, est.st_ino)
                    if key not in seen:
                        seen.add(key)
                        size += est.st_blocks * _BLOCK
    return Usage(size=size, inodes=len(seen))


def _copy_file_content(src: str, dst: str) -> None:
    with open(src, "rb") as fsrc, open(dst, "wb") as fdst:
        remaining = os.fstat(fsrc.fileno()).st_size
        first = True
        while remaining > 0:
            try:
                n = os.copy_file_range(fsrc.fileno(), fdst.fileno(), min(remaining, 1 << 30))
            except OSError as e:
                if first and e.errno in (errno.ENOSYS, errno.EXDEV, errno.EINVAL, errno.EOPNOTSUPP):
                    while chunk := fsrc.read(1 << 20):
                        fdst.write(chunk)
                    return
                raise
            if n == 0:
                break
            first = False
            remaining -= n


def _copy_xattrs(src: str, dst: str) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError as e:
        log.debug("cannot list xattrs of %s: %s", src, e)
        return
    for name in names:
        try:
            os.setxattr(
                dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False
            )
        except OSError as e:
            # security.* and friends often cannot be copied (moby/buildkit#1189);
            # containerd's native snapshotter ignores these failures too.
            log.debug("cannot copy xattr %s of %s: %s", name, src, e)


def _copy_metadata(st: os.stat_result, src: str, dst: str) -> None:
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    _copy_xattrs(src, dst)


def copy_dir(dst: str | Path, src: str | Path) -> None:
    """Copy the tree ``src`` into ``dst`` keeping owners, modes, times, xattrs and hard links.

    Behaves as continuity's ``fs.CopyDir`` as the native snapshotter uses it:
    ``dst`` may exist (it takes ``src``'s mode), devices, fifos and sockets are
    recreated, unsupported xattrs are skipped.
    """
    inodes: dict[tuple[int, int], str] = {}
    _copy_tree(os.fspath(dst), os.fspath(src), inodes)


def _copy_tree(dst: str, src: str, inodes: dict[tuple[int, int], str]) -> None:
    st = os.stat(src)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "source is not a directory", src)
    try:
        os.mkdir(dst, stat.S_IMODE(st.st_mode))
    except FileExistsError:
        if not os.path.isdir(dst):
            raise NotADirectoryError(errno.ENOTDIR, "cannot copy to non-directory", dst) from None
    _copy_metadata(st, src, dst)
    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        source = entry.path
        target = os.path.join(dst, entry.name)
        est = entry.stat(follow_symlinks=False)
        mode = est.st_mode
        if stat.S_ISDIR(mode):
            _copy_tree(target, source, inodes)
            continue
        if stat.S_ISREG(mode):
            key = (est.st_dev, est.st_ino)
            if est.st_nlink > 1 and key in inodes:
                os.link(inodes[key], target)
                continue
            _copy_file_content(source, target)
            if est.st_nlink > 1:
                inodes[key] = target
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(source), target)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            os.mknod(target, mode, est.st_rdev)
        else:
            log.warning("unsupported file type: %s (mode %o)", source, mode)
            continue
        _copy_metadata(est, source, target)


def _kernel_at_least(major: int, minor: int) -> bool:
    release = os.uname().release
    parts = release.split(".", 2)
    try:
        have = (int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0))
    except (IndexError, ValueError):
        return False
    return have >= (major, minor)


def needs_userxattr(root: str | Path) -> bool:
    """Whether overlay mounts need "userxattr" (overlayutils.NeedsUserXAttr).

    Never in the initial user namespace, never on tmpfs; inside another user
    namespace on kernels >= 5.11.  Older kernels would need a trial mount,
    which this implementation does not attempt: it assumes the option is not
    needed there (Debian and Ubuntu kernels of that age mount without it).
    """
    if not in_user_namespace():
        return False
    if _is_tmpfs(root):
        return False
    return _kernel_at_least(5, 11)


def _is_tmpfs(path: str | Path) -> bool:
    # statvfs has no f_type; find the filesystem of the longest matching mount.
    target = os.path.realpath(path)
    best, fstype = "", ""
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 3:
                    continue
                mnt = fields[1].replace("\\040", " ")
                if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(
                    best
                ):
                    best, fstype = mnt, fields[2]
    except OSError:
        return False
    return fstype == "tmpfs"


def supports_index_off() -> bool:
    """Whether the kernel knows overlay's "index" option (overlay.go supportsIndex)."""
    return os.path.exists("/sys/module/overlay/parameters/index")
