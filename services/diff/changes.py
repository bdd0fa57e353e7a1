"""The changes between two directory trees, in the order a layer lists them.

A double walk as continuity's ``fs.Changes`` does it
(v1.6.20:vendor/github.com/containerd/continuity/fs/diff.go, path.go): both
trees are walked in lexical order (Go's filepath.Walk, comparing paths with
"/" sorting first), a path only in the lower tree is deleted (once, for a
whole removed directory), only in the upper one added, in both compared.
Two entries are the same when they are the same inode, or have equal type,
mode, owner, device, file capabilities and - for non-directories - size and
mtime; when both mtimes have no sub-second part (times truncated by an
earlier tar round trip) the contents or link targets decide.  Unchanged
hardlinked files are still reported (as UNMODIFIED) so the writer can keep
their links.

Paths are bytes: names need not be valid UTF-8, and byte order is Go's order.
"""

from __future__ import annotations

import enum
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

_COMPARE_CHUNK = 1 << 20
CAPABILITY_XATTR = "security.capability"


class Kind(enum.IntEnum):
    UNMODIFIED = 0
    ADD = 1
    MODIFY = 2
    DELETE = 3


@dataclass(frozen=True)
class Change:
    kind: Kind
    path: bytes  # "/a/b", relative to the tree's root
    st: os.stat_result | None  # the upper entry's lstat; None for DELETE


@dataclass(frozen=True)
class _Entry:
    path: bytes
    full: bytes
    st: os.stat_result

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)


def walk(root: bytes) -> Iterator[_Entry]:
    """Every entry below ``root`` (not root itself), parents first, names in byte order."""

    def visit(full: bytes, rel: bytes) -> Iterator[_Entry]:
        for name in sorted(os.listdir(full)):
            child_full = full + b"/" + name
            child = _Entry(rel + b"/" + name, child_full, os.lstat(child_full))
            yield child
            if child.is_dir:
                yield from visit(child_full, child.path)

    yield from visit(root.rstrip(b"/") or b"/", b"")


def _key(path: bytes) -> bytes:
    # continuity's directoryCompare: the separator sorts before every byte.
    return path.replace(b"/", b"\x00")


def capability(path: bytes) -> bytes | None:
    try:
        return os.getxattr(path, CAPABILITY_XATTR, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.EOPNOTSUPP):
            return None
        raise


def _same_content(p1: bytes, p2: bytes) -> bool:
    with open(p1, "rb", buffering=0) as f1, open(p2, "rb", buffering=0) as f2:
        while True:
            b1 = f1.read(_COMPARE_CHUNK)
            b2 = f2.read(_COMPARE_CHUNK)
            if b1 != b2:
                return False
            if not b1:
                return True


def same_file(e1: _Entry, e2: _Entry) -> bool:
    s1, s2 = e1.st, e2.st
    if (s1.st_dev, s1.st_ino) == (s2.st_dev, s2.st_ino):
        return True
    if (s1.st_mode, s1.st_uid, s1.st_gid, s1.st_rdev) != (
        s2.st_mode,
        s2.st_uid,
        s2.st_gid,
        s2.st_rdev,
    ):
        return False
    if capability(e1.full) != capability(e2.full):
        return False
    if e1.is_dir:
        return True
    if s1.st_size != s2.st_size:
        return False
    sec1, ns1 = divmod(s1.st_mtime_ns, 1_000_000_000)
    sec2, ns2 = divmod(s2.st_mtime_ns, 1_000_000_000)
    if sec1 != sec2:
        return False
    if ns1 == 0 and ns2 == 0:
        if stat.S_ISLNK(s1.st_mode):
            return os.readlink(e1.full) == os.readlink(e2.full)
        if s1.st_size == 0:
            return True
        return _same_content(e1.full, e2.full)
    return ns1 == ns2


def _linked(st: os.stat_result) -> bool:
    return not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1


def changes(lower: bytes, upper: bytes) -> Iterator[Change]:
    """The changes that turn ``lower`` into ``upper``, in layer order."""
    walk1, walk2 = walk(lower), walk(upper)
    f1, f2 = next(walk1, None), next(walk2, None)
    rmdir: bytes | None = None
    while f1 is not None or f2 is not None:
        if f1 is None:
            order = 1
        elif f2 is None:
            order = -1
        else:
            k1, k2 = _key(f1.path), _key(f2.path)
            order = -1 if k1 < k2 else (1 if k1 > k2 else 0)

        if order > 0:  # only in upper
            assert f2 is not None
            rmdir = None
            yield Change(Kind.ADD, f2.path, f2.st)
            f2 = next(walk2, None)
        elif order < 0:  # only in lower
            assert f1 is not None
            if rmdir is not None and f1.path.startswith(rmdir):
                f1 = next(walk1, None)  # inside a directory already deleted
                continue
            if f1.is_dir:
                rmdir = f1.path + b"/"
            elif rmdir is not None:
                rmdir = None
            yield Change(Kind.DELETE, f1.path, None)
            f1 = next(walk1, None)
        else:
            assert f1 is not None and f2 is not None
            same = same_file(f1, f2)
            if f1.is_dir and not f2.is_dir:
                rmdir = f1.path + b"/"
            elif rmdir is not None:
                rmdir = None
            entry = f2
            f1, f2 = next(walk1, None), next(walk2, None)
            if same:
                if not _linked(entry.st):
                    continue
                yield Change(Kind.UNMODIFIED, entry.path, entry.st)
            else:
                yield Change(Kind.MODIFY, entry.path, entry.st)
