"""Layer extraction in-process: OCI changeset semantics, tar formats, invalid archives."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from api import errdefs
from services.diff.archive import Extractor, Whiteouts
from services.diff.compression import Hasher
from services.diff.overlay import OPAQUE_XATTR, OverlayWhiteouts
from services.diff.tarstream import TarStream
from tests.diff import layers as L
from tests.support import need_root

pytestmark = pytest.mark.root

# A version-2 file capability granting cap_net_bind_service (effective).
CAPABILITY = b"\x01\x00\x00\x02\x00\x04\x00\x00" + bytes(12)


@pytest.fixture(autouse=True)
def _root() -> None:
    need_root()


class Chunks:
    """A Source over bytes in small, odd-sized chunks (members straddle chunks)."""

    def __init__(self, data: bytes, size: int = 3001) -> None:
        self._data = data
        self._pos = 0
        self._size = size

    def get(self) -> bytes:
        chunk = self._data[self._pos : self._pos + self._size]
        self._pos += len(chunk)
        return chunk


def apply(
    root: Path,
    tar: bytes,
    whiteouts: Whiteouts | None = None,
    parents: Sequence[str] = (),
) -> tuple[int, str]:
    hasher = Hasher()
    stream = TarStream(Chunks(tar), hasher)
    size = Extractor(str(root), whiteouts, parents).apply(stream)
    stream.drain()
    return size, hasher.digest()


def test_entry_types_owners_modes_times_xattrs(tmp_path: Path) -> None:
    tar = L.layer(
        [
            L.dir("d", mode=0o1777, uid=10, gid=20, xattrs={"user.dir": b"d"}),
            L.file(
                "d/suid",
                b"x" * 5000,
                mode=0o4755,
                uid=1000,
                gid=1000,
                xattrs={"user.note": b"hi"},
            ),
            L.file("d/cap", b"c", mode=0o755, xattrs={"security.capability": CAPABILITY}),
            L.file("d/sgid", b"g", mode=0o2711, pax={"mtime": "1700000000.123456789"}),
            L.symlink("d/link", "suid", uid=7, gid=8),
            L.hardlink("d/hard", "d/suid", mode=0o4755, uid=1000, gid=1000),
            L.char("d/null", 1, 3),
            L.block("d/blk", 7, 0),
            L.fifo("d/fifo", mode=0o600),
            L.file("d/trusted", b"t", xattrs={"trusted.evil": b"1"}),
            L.symlink("d/xlink", "nowhere", xattrs={"user.x": b"1"}),
        ]
    )
    size, digest = apply(tmp_path, tar)
    assert digest == L.digest(tar)
    assert size == 5000 + 1 + 1 + 1
    t = L.tree(tmp_path)
    assert t["d"].mode == 0o1777 and (t["d"].uid, t["d"].gid) == (10, 20)
    assert ("user.dir", b"d") in t["d"].xattrs
    suid = t["d/suid"]
    assert (suid.kind, suid.mode, suid.uid, suid.gid, suid.size) == (
        "file",
        0o4755,
        1000,
        1000,
        5000,
    )
    assert dict(suid.xattrs)["user.note"] == b"hi"
    assert dict(t["d/cap"].xattrs) == {"security.capability": CAPABILITY}
    assert suid.links == ("d/hard",)
    assert suid.mtime_ns == L.MTIME * 10**9
    assert t["d/sgid"].mode == 0o2711
    assert t["d/sgid"].mtime_ns == 1_700_000_000_123_456_789
    assert (t["d/link"].kind, t["d/link"].link, t["d/link"].uid) == ("symlink", "suid", 7)
    assert t["d/link"].mtime_ns == L.MTIME * 10**9
    assert (t["d/null"].kind, t["d/null"].rdev, t["d/null"].mode) == ("char", (1, 3), 0o666)
    assert (t["d/blk"].kind, t["d/blk"].rdev) == ("block", (7, 0))
    assert (t["d/fifo"].kind, t["d/fifo"].mode) == ("fifo", 0o600)
    assert t["d/trusted"].xattrs == ()  # trusted.* never comes from a layer
    assert t["d/xlink"].xattrs == ()  # user.* cannot live on a symlink: ignored
    # Directory times are set after everything inside was created.
    assert t["d"].mtime_ns == L.MTIME * 10**9


def test_whiteouts_and_opaque_directories(tmp_path: Path) -> None:
    apply(
        tmp_path,
        L.layer(
            [
                L.dir("keep"),
                L.file("keep/a", b"a"),
                L.file("keep/b", b"b"),
                L.dir("gone"),
                L.file("gone/x", b"x"),
                L.dir("opq"),
                L.file("opq/old", b"old"),
                L.dir("opq/sub"),
                L.file("opq/sub/old", b"old"),
            ]
        ),
    )
    apply(
        tmp_path,
        L.layer(
            [
                L.whiteout("keep/a"),
                L.whiteout("gone"),
                L.whiteout("never-there"),
                L.dir("opq"),
                L.file("opq/new", b"new"),
                L.opaque("opq"),
                L.dir("opq/sub"),
                L.file("opq/sub/newer", b"n"),
            ]
        ),
    )
    assert sorted(L.tree(tmp_path)) == [
        "keep",
        "keep/b",
        "opq",
        "opq/new",
        "opq/sub",
        "opq/sub/newer",
    ]


def test_replacing_entries_and_merging_directories(tmp_path: Path) -> None:
    apply(
        tmp_path,
        L.layer(
            [
                L.file("f2d", b"file"),
                L.dir("d2f"),
                L.file("d2f/child", b"c"),
                L.symlink("l2d", "/elsewhere"),
                L.dir("merge", mode=0o700),
                L.file("merge/kept", b"k"),
            ]
        ),
    )
    apply(
        tmp_path,
        L.layer(
            [
                L.dir("f2d"),
                L.file("d2f", b"now a file"),
                L.dir("l2d"),
                L.dir("merge", mode=0o755, uid=3),
                L.file("merge/added", b"a"),
            ]
        ),
    )
    t = L.tree(tmp_path)
    assert t["f2d"].kind == "dir" and t["d2f"].kind == "file" and t["l2d"].kind == "dir"
    assert "d2f/child" not in t
    assert (t["merge"].mode, t["merge"].uid) == (0o755, 3)
    assert {"merge/kept", "merge/added"} <= set(t)


def test_missing_parents_are_created_0755(tmp_path: Path) -> None:
    os.umask(0o077)
    try:
        apply(tmp_path, L.layer([L.file("a/b/c/f", b"f")]))
    finally:
        os.umask(0o022)
    t = L.tree(tmp_path)
    assert [t[p].mode for p in ("a", "a/b", "a/b/c")] == [0o755] * 3


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_tar_formats_long_names_and_odd_names(tmp_path: Path, fmt: int) -> None:
    depth = 2 if fmt == tarfile.USTAR_FORMAT else 5  # ustar: a 155-byte prefix at most
    long = "/".join(["d" * 60] * depth) + "/" + "f" * 90
    entries = [
        L.file("./dot-slash", b"1"),
        L.file("/absolute", b"2"),
        L.file("a//double//slash", b"3"),
        L.file(long, b"4"),
        L.symlink("longlink", "t" * 99 if fmt == tarfile.USTAR_FORMAT else "t" * 300),
    ]
    if fmt != tarfile.USTAR_FORMAT:
        entries.append(L.file("ünïcödé-名前", b"5"))
    apply(tmp_path, L.layer(entries, fmt=fmt))
    t = L.tree(tmp_path)
    assert {"dot-slash", "absolute", "a/double/slash", long} <= set(t)
    assert t["longlink"].link.startswith("ttt")
    if fmt != tarfile.USTAR_FORMAT:
        assert "ünïcödé-名前" in t


def test_empty_streams_apply_nothing(tmp_path: Path) -> None:
    assert apply(tmp_path, b"") == (0, L.digest(b""))
    assert apply(tmp_path, bytes(1024))[0] == 0
    assert apply(tmp_path, L.layer([]))[0] == 0
    assert os.listdir(tmp_path) == []


def test_trailing_bytes_after_the_archive_are_hashed(tmp_path: Path) -> None:
    tar = L.layer([L.file("f", b"f")]) + b"trailing garbage"
    _, digest = apply(tmp_path, tar)
    assert digest == L.digest(tar)


def _corrupt_second_header(tar: bytes) -> bytes:
    # Member 1 ("a", 1 byte of data) spans blocks 0-1; block 2 is member 2's header.
    data = bytearray(tar)
    data[2 * 512 + 148 : 2 * 512 + 156] = b"0000000\0"  # wrong checksum
    return bytes(data)


@pytest.mark.parametrize(
    "tar, message",
    [
        (
            _corrupt_second_header(
                L.layer([L.file("a", b"a"), L.file("b", b"b")], fmt=tarfile.USTAR_FORMAT)
            ),
            "offset 1024",
        ),
        (L.layer([L.file("f", b"x" * 5000)])[:2048], "unexpected EOF"),
        (L.layer([L.file(".wh..", b"")]), "invalid whiteout"),
        (L.layer([L.file("d/.wh.", b"")]), "invalid whiteout"),
        (L.layer([L.E("vol", b"V")]), "unhandled tar header type"),
        (L.layer([L.E("cont", tarfile.CONTTYPE)]), "unhandled tar header type"),
        (L.layer([L.symlink("a", "b"), L.symlink("b", "a"), L.file("a/x", b"")]), "symbolic links"),
        (L.layer([L.hardlink("h", "missing")]), "not found"),
        (L.layer([L.dir("d"), L.hardlink("h", "d/")]), "invalid hardlink target"),
        (bytes(512) + b"\x01" * 512, "invalid tar header"),
        (b"not a tar archive at all" * 40, "invalid archive"),
    ],
    ids=[
        "bad-checksum",
        "truncated",
        "whiteout-dotdot",
        "whiteout-empty",
        "unknown-type",
        "contiguous-type",
        "symlink-loop",
        "hardlink-missing",
        "hardlink-dir",
        "zero-then-data",
        "garbage",
    ],
)
def test_invalid_archives_are_refused(tmp_path: Path, tar: bytes, message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=message):
        apply(tmp_path, tar)


def test_a_file_where_a_parent_should_be_is_refused(tmp_path: Path) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="not a directory"):
        apply(tmp_path, L.layer([L.file("f", b"f"), L.file("f/child", b"c")]))


def test_overlay_whiteouts_and_inherited_parents(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "etc" / "deep").mkdir(parents=True)
    os.chmod(lower / "etc", 0o710)
    os.chown(lower / "etc", 5, 6)
    os.setxattr(lower / "etc", "user.inherited", b"yes")
    os.setxattr(lower / "etc", "trusted.not-copied", b"no")
    os.utime(lower / "etc", ns=(1, 2_000_000_000))
    upper.mkdir()
    apply(
        upper,
        L.layer(
            [
                L.file("etc/deep/new", b"n"),
                L.E("etc/.wh.removed", uid=4, gid=5),
                L.dir("opq"),
                L.opaque("opq"),
            ]
        ),
        OverlayWhiteouts(),
        [str(lower)],
    )
    t = L.tree(upper, dir_mtimes=True)
    assert (t["etc"].mode, t["etc"].uid, t["etc"].gid) == (0o710, 5, 6)
    assert dict(t["etc"].xattrs) == {"user.inherited": b"yes"}
    assert t["etc/deep"].mode == 0o755  # not below: default
    wh = t["etc/removed"]
    assert (wh.kind, wh.rdev, wh.uid, wh.gid) == ("char", (0, 0), 4, 5)
    assert dict(t["opq"].xattrs)[OPAQUE_XATTR] == b"y"
    assert not any(".wh." in p for p in t)


def test_sparse_members(tmp_path: Path) -> None:
    # A GNU sparse member (old format, as GNU tar writes with --sparse).
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.seek(1 << 20)
        f.write(b"end")
    out = io.BytesIO()
    os.system(f"tar -C {src} --sparse --format=gnu -cf - sparse > {tmp_path}/s.tar")
    data = (tmp_path / "s.tar").read_bytes()
    out.write(data)
    dest = tmp_path / "dest"
    dest.mkdir()
    apply(dest, out.getvalue())
    content = (dest / "sparse").read_bytes()
    assert len(content) == (1 << 20) + 3 and content.endswith(b"end") and content[:10] == bytes(10)
    assert stat.S_ISREG(os.lstat(dest / "sparse").st_mode)
