"""Writing changes as an OCI layer tar (containerd's ChangeWriter).

As v1.6.20:archive/tar.go's ChangeWriter (with 1.7's source-date-epoch
options): deletions become empty ``.wh.NAME`` files; every entry's parent
directories are written first if the diff did not already carry them;
hardlinked files are written once and their other names as links to it, an
unchanged file's names joining the first changed one; sockets are skipped;
only the ``security.capability`` xattr is carried; times are whole seconds,
owners numeric, no user or group names.
"""

from __future__ import annotations

import copy
import os
import stat
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from services.diff.changes import Kind, capability

BLOCK = tarfile.BLOCKSIZE
_TYPES = {
    stat.S_IFREG: tarfile.REGTYPE,
    stat.S_IFDIR: tarfile.DIRTYPE,
    stat.S_IFLNK: tarfile.SYMTYPE,
    stat.S_IFCHR: tarfile.CHRTYPE,
    stat.S_IFBLK: tarfile.BLKTYPE,
    stat.S_IFIFO: tarfile.FIFOTYPE,
}
_READ_CHUNK = 1 << 20


def _text(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


@dataclass
class _State:
    inode_src: dict[int, str] = field(default_factory=dict)
    inode_refs: dict[int, list[str]] = field(default_factory=dict)
    added_dirs: set[str] = field(default_factory=set)


class ChangeWriter:
    """``handle`` each change in order, then ``close``; tar bytes go to ``write``."""

    def __init__(
        self,
        write: Callable[[bytes], None],
        source: bytes,
        *,
        source_date_epoch: int | None = None,
    ) -> None:
        self._write = write
        self._source = source.rstrip(b"/")
        self._epoch = source_date_epoch
        # Go rounds the whiteout time to the second (the header's format is
        # left open, so the writer rounds rather than truncates).
        self._whiteout_time = (
            source_date_epoch if source_date_epoch is not None else round(time.time())
        )
        self._state = _State()

    def handle(self, kind: Kind, path: bytes, st: os.stat_result | None) -> None:
        if kind == Kind.DELETE:
            parent, _, base = path.rpartition(b"/")
            info = tarfile.TarInfo(_text(parent + b"/.wh." + base).lstrip("/"))
            info.type = tarfile.REGTYPE
            info.mode = 0
            info.mtime = self._whiteout_time
            self._include_parents(info)
            self._emit(info)
            return
        assert st is not None
        self._add(kind, path, st)

    def _add(self, kind: Kind, path: bytes, st: os.stat_result) -> None:
        fmt = stat.S_IFMT(st.st_mode)
        if fmt == stat.S_IFSOCK:
            return
        if fmt not in _TYPES:
            raise ValueError(f"{path!r}: unsupported file type {fmt:o}")
        full = self._source + b"/" + path.lstrip(b"/")
        name = _text(path).lstrip("/")
        if fmt == stat.S_IFDIR and not name.endswith("/"):
            name += "/"
        info = tarfile.TarInfo(name)
        info.type = _TYPES[fmt]
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname = info.gname = ""
        mtime = st.st_mtime_ns // 1_000_000_000
        if self._epoch is not None and st.st_mtime_ns > self._epoch * 1_000_000_000:
            mtime = self._epoch
        info.mtime = mtime
        if fmt == stat.S_IFREG:
            info.size = st.st_size
        elif fmt == stat.S_IFLNK:
            info.linkname = _text(os.readlink(full))
        elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)

        state = self._state
        additional: list[str] = []
        if fmt != stat.S_IFDIR and st.st_nlink > 1:
            first = state.inode_src.get(st.st_ino)
            if first is not None:
                info.type = tarfile.LNKTYPE
                info.linkname = first
                info.size = 0
            elif kind == Kind.UNMODIFIED:
                state.inode_refs.setdefault(st.st_ino, []).append(name)
                return
            else:
                state.inode_src[st.st_ino] = name
                additional = state.inode_refs.pop(st.st_ino, [])
        elif kind == Kind.UNMODIFIED:
            return

        cap = capability(full)
        if cap:
            info.pax_headers = {"SCHILY.xattr.security.capability": _text(cap)}

        self._include_parents(info)
        self._emit(info)
        if info.type == tarfile.REGTYPE and info.size > 0:
            self._copy(full, info.size)
        for extra in additional:
            link = copy.copy(info)
            link.pax_headers = dict(info.pax_headers)
            link.name = extra
            link.type = tarfile.LNKTYPE
            link.linkname = info.name
            link.size = 0
            self._include_parents(link)
            self._emit(link)

    def _include_parents(self, info: tarfile.TarInfo) -> None:
        name = info.name.rstrip("/")
        parent = os.path.dirname(name)
        state = self._state
        if name and parent and parent not in state.added_dirs:
            state.added_dirs.add(parent)
            # containerd stats (follows) the parent, which is a directory anyway.
            st = os.stat(self._source + b"/" + os.fsencode(parent))
            self.handle(Kind.MODIFY, b"/" + os.fsencode(parent), st)
        if info.type == tarfile.DIRTYPE:
            state.added_dirs.add(name)

    def _emit(self, info: tarfile.TarInfo) -> None:
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def _copy(self, full: bytes, size: int) -> None:
        left = size
        with open(full, "rb", buffering=0) as f:
            while left > 0:
                data = f.read(min(left, _READ_CHUNK))
                if not data:
                    raise OSError(f"{_text(full)}: short read: file shrank while writing the diff")
                self._write(data)
                left -= len(data)
        if size % BLOCK:
            self._write(bytes(BLOCK - size % BLOCK))

    def close(self) -> None:
        # The end-of-archive marker: two zero blocks (Go pads no further).
        self._write(bytes(2 * BLOCK))
