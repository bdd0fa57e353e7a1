"""Tree appliers and comparison, in the spirit of continuity's fstest.

An ``Applier`` changes a directory tree; ``apply`` chains several.  The same
appliers run against a plain directory and against a mounted snapshot, then
``assert_same_tree`` compares the two.  Modes are set explicitly so the
process umask does not matter.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

Applier = Callable[[Path], None]


def _p(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def create_file(path: str, data: bytes, mode: int) -> Applier:
    def apply(root: Path) -> None:
        p = _p(root, path)
        p.write_bytes(data)
        os.chmod(p, mode)

    return apply


def create_dir(path: str, mode: int) -> Applier:
    def apply(root: Path) -> None:
        p = _p(root, path)
        p.mkdir()
        os.chmod(p, mode)

    return apply


def remove_all(path: str) -> Applier:
    def apply(root: Path) -> None:
        p = _p(root, path)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()

    return apply


def chown(path: str, uid: int, gid: int) -> Applier:
    def apply(root: Path) -> None:
        os.lchown(_p(root, path), uid, gid)

    return apply


def link(old: str, new: str) -> Applier:
    def apply(root: Path) -> None:
        os.link(_p(root, old), _p(root, new))

    return apply


def symlink(target: str, path: str) -> Applier:
    def apply(root: Path) -> None:
        os.symlink(target, _p(root, path))

    return apply


def rename(old: str, new: str) -> Applier:
    """Rename as mv(1) does: overlayfs without redirect_dir answers EXDEV for a
    directory from a lower layer, and then the tree is copied instead."""

    def apply(root: Path) -> None:
        try:
            os.rename(_p(root, old), _p(root, new))
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            shutil.move(_p(root, old), _p(root, new))

    return apply


def apply(*appliers: Applier) -> Applier:
    def run(root: Path) -> None:
        for a in appliers:
            a(root)

    return run


Entry = tuple[str, int, int, int, bytes]


def tree(root: Path) -> dict[str, Entry]:
    """Every path below ``root``: (type, permission bits, uid, gid, content or link target)."""
    out: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            rel = os.path.relpath(full, root)
            if stat.S_ISDIR(st.st_mode):
                kind, data = "dir", b""
            elif stat.S_ISLNK(st.st_mode):
                kind, data = "symlink", os.readlink(full).encode()
            elif stat.S_ISREG(st.st_mode):
                kind, data = "file", Path(full).read_bytes()
            else:
                kind, data = "special", str(st.st_rdev).encode()
            out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, data)
    return out


def assert_same_tree(expected: Path, actual: Path) -> None:
    want, got = tree(expected), tree(actual)
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    differ = sorted(p for p in set(want) & set(got) if want[p] != got[p])
    problems = []
    if missing:
        problems.append(f"missing: {missing}")
    if extra:
        problems.append(f"unexpected: {extra}")
    for p in differ:
        problems.append(
            f"{p}: expected {want[p][:4]} {want[p][4][:40]!r}, got {got[p][:4]} {got[p][4][:40]!r}"
        )
    assert not problems, f"{actual} differs from {expected}:\n" + "\n".join(problems)
