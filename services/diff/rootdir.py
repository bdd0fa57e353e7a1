"""Path lookup confined to a directory, as if that directory were ``/``.

A layer names paths and symlink targets freely; every one of them must land
inside the target root.  Lookups here walk one component at a time from an
open descriptor of the root, opening each directory with ``O_NOFOLLOW`` and
reading symlinks explicitly: an absolute target restarts at the root, ``..``
stops at the root, and the kernel never resolves more than one name, so no
symlink - in the layer, already in the tree, or planted concurrently - can
lead outside.

The semantics are those of continuity's ``fs.RootPath``, which containerd's
archive code uses (v1.6.20:vendor/github.com/containerd/continuity/fs/path.go):
names are cleaned lexically, a relative link target is joined lexically to the
directory holding the link, components that do not exist are kept as they
are, and more than 255 links is an error.  Unlike RootPath, the result is an
open directory, not a string that a later call would resolve again.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from api import errdefs

MAX_LINKS = 255

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def clean_parts(path: str) -> list[str]:
    """``path`` as components below the root: "" and "." dropped, ".." clamped at the root."""
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out:
                out.pop()
            continue
        out.append(part)
    return out


class Dir:
    """An open directory inside a root; ``parts`` is its path from the root, links resolved."""

    __slots__ = ("_owned", "fd", "parts")

    def __init__(self, fd: int, parts: tuple[str, ...], owned: bool = True) -> None:
        self.fd = fd
        self.parts = parts
        self._owned = owned

    def close(self) -> None:
        if self._owned and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def child(self, name: str) -> Dir:
        """Open the subdirectory ``name``; OSError (ENOTDIR/ELOOP for a symlink) otherwise."""
        return Dir(os.open(name, DIR_FLAGS, dir_fd=self.fd), (*self.parts, name))

    def lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def proc_path(self, name: str) -> str:
        """``name`` in this directory as a /proc path, for calls that take no dir fd."""
        return f"/proc/self/fd/{self.fd}/{name}"


@dataclass
class Lookup:
    """Where a lookup stopped: ``dir`` is the deepest directory reached, ``rest`` what is left.

    ``rest`` is empty when the whole path is a directory; otherwise its first
    component does not exist in ``dir`` or is not a directory (nor a link).
    """

    dir: Dir
    rest: list[str]


class RootDir:
    """``RootDir(path)``: lookups confined to ``path``; close it when done."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.root = Dir(self.fd, (), owned=False)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> RootDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lookup(self, parts: Sequence[str]) -> Lookup:
        """Follow ``parts`` (already cleaned) from the root, every symlink included.

        Raises InvalidArgument after more than MAX_LINKS symlinks (a loop).
        The caller closes ``Lookup.dir``.
        """
        todo = list(parts)
        links = 0
        while True:
            cur = self.root
            for i, name in enumerate(todo):
                try:
                    nxt = cur.child(name)
                except FileNotFoundError:
                    return Lookup(cur, todo[i:])
                except OSError as e:
                    if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                        cur.close()
                        raise
                    st = cur.lstat(name)
                    if st is None or not stat.S_ISLNK(st.st_mode):
                        return Lookup(cur, todo[i:])
                    links += 1
                    if links > MAX_LINKS:
                        cur.close()
                        raise errdefs.InvalidArgument(
                            f"{'/'.join(parts)}: too many levels of symbolic links"
                        ) from None
                    target = os.readlink(name, dir_fd=cur.fd)
                    base = "" if target.startswith("/") else "/".join(cur.parts)
                    todo = clean_parts("/".join([base, target, *todo[i + 1 :]]))
                    cur.close()
                    break
                cur.close()
                cur = nxt
            else:
                return Lookup(cur, [])
