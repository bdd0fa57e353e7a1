"""Building layer tars entry by entry, and describing directory trees for comparison."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

MTIME = 1_700_000_000

MEDIA_TYPES = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}


@dataclass
class E:
    """One tar member."""

    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int | float = MTIME
    link: str = ""
    dev: tuple[int, int] = (0, 0)
    xattrs: Mapping[str, bytes] = field(default_factory=dict)
    pax: Mapping[str, str] = field(default_factory=dict)


def file(name: str, data: bytes = b"", mode: int = 0o644, **kw: object) -> E:
    return E(name, tarfile.REGTYPE, data, mode, **kw)  # type: ignore[arg-type]


def dir(name: str, mode: int = 0o755, **kw: object) -> E:
    return E(name, tarfile.DIRTYPE, mode=mode, **kw)  # type: ignore[arg-type]


def symlink(name: str, target: str, **kw: object) -> E:
    return E(name, tarfile.SYMTYPE, link=target, mode=0o777, **kw)  # type: ignore[arg-type]


def hardlink(name: str, target: str, **kw: object) -> E:
    return E(name, tarfile.LNKTYPE, link=target, **kw)  # type: ignore[arg-type]


def char(name: str, major: int, minor: int, mode: int = 0o666) -> E:
    return E(name, tarfile.CHRTYPE, mode=mode, dev=(major, minor))


def block(name: str, major: int, minor: int, mode: int = 0o660) -> E:
    return E(name, tarfile.BLKTYPE, mode=mode, dev=(major, minor))


def fifo(name: str, mode: int = 0o644) -> E:
    return E(name, tarfile.FIFOTYPE, mode=mode)


def whiteout(path: str) -> E:
    head, _, base = path.rpartition("/")
    return file(f"{head}/.wh.{base}" if head else f".wh.{base}", mode=0)


def opaque(directory: str) -> E:
    return file(f"{directory.rstrip('/')}/.wh..wh..opq", mode=0)


def layer(entries: Iterable[E], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8") as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = e.type
            info.mode = e.mode
            info.uid, info.gid = e.uid, e.gid
            info.mtime = e.mtime
            info.linkname = e.link
            info.devmajor, info.devminor = e.dev
            pax = dict(e.pax)
            for key, value in e.xattrs.items():
                pax["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
            info.pax_headers = pax
            if e.type == tarfile.REGTYPE:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if compression == "zstd":
        return bytes(zstandard.ZstdCompressor().compress(data))
    assert compression == "none"
    return data


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- trees ---------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    content: str  # sha256 of a regular file's data
    link: str
    rdev: tuple[int, int]
    xattrs: tuple[tuple[str, bytes], ...]
    mtime_ns: int | None
    links: tuple[str, ...]  # other names of the same inode (hardlinks)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "dir"),
        (stat.S_ISREG, "file"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISCHR, "char"),
        (stat.S_ISBLK, "block"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "?"


def _xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    try:
        keys = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    out = []
    for key in sorted(keys):
        if key.startswith("security.selinux"):
            continue
        try:
            out.append((key, os.getxattr(path, key, follow_symlinks=False)))
        except OSError:
            continue
    return tuple(out)


def tree(root: str | Path, *, dir_mtimes: bool = True) -> dict[str, Node]:
    """Every entry below ``root`` with what the conformance suite compares (not atime)."""
    root = str(root)
    raw: dict[str, os.stat_result] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            raw[os.path.relpath(full, root)] = os.lstat(full)
    by_inode: dict[int, list[str]] = {}
    for rel, st in raw.items():
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            by_inode.setdefault(st.st_ino, []).append(rel)
    out = {}
    for rel, st in sorted(raw.items()):
        full = os.path.join(root, rel)
        kind = _kind(st.st_mode)
        content = ""
        if kind == "file":
            with open(full, "rb") as f:
                content = hashlib.sha256(f.read()).hexdigest()
        rdev = (os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in ("char", "block") else (0, 0)
        # An overlay whiteout (char 0/0) is made at apply time: its mtime is "now".
        whiteout = kind == "char" and rdev == (0, 0)
        keep_mtime = (dir_mtimes or kind != "dir") and not whiteout
        out[rel] = Node(
            kind=kind,
            mode=stat.S_IMODE(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
            size=st.st_size if kind in ("file", "symlink") else 0,
            content=content,
            link=os.readlink(full) if kind == "symlink" else "",
            rdev=rdev,
            xattrs=_xattrs(full),
            mtime_ns=st.st_mtime_ns if keep_mtime else None,
            links=tuple(sorted(p for p in by_inode.get(st.st_ino, []) if p != rel)),
        )
    return out


def diff_trees(a: Mapping[str, Node], b: Mapping[str, Node]) -> list[str]:
    """Human-readable differences between two trees (empty when equal)."""
    out = []
    for path in sorted(set(a) | set(b)):
        if path not in a:
            out.append(f"only in second: {path} {b[path]}")
        elif path not in b:
            out.append(f"only in first: {path} {a[path]}")
        elif a[path] != b[path]:
            fields = [
                f"{f}: {getattr(a[path], f)!r} != {getattr(b[path], f)!r}"
                for f in a[path].__dataclass_fields__
                if getattr(a[path], f) != getattr(b[path], f)
            ]
            out.append(f"{path}: " + "; ".join(fields))
    return out
