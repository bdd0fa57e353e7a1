"""Diff conformance: berthd-diff and containerd's own differ, side by side.

The same test-built layers go through our plugin (over its socket, reading
blobs from containerd's content store) and through containerd's diff
service; the resulting trees must be identical in names, types, modes,
owners, sizes, contents, link targets, hardlinks, xattrs and mtimes.  Diff
followed by Apply must reproduce the upper tree, for both differs' layers.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from api import errdefs
from services.diff import mediatypes
from services.diff.differ import Descriptor, Mount
from tests.diff import layers as L
from tests.diff.conftest import Env, bind

pytestmark = [pytest.mark.root, pytest.mark.containerd]

CAPABILITY = b"\x01\x00\x00\x02\x00\x04\x00\x00" + bytes(12)


def base_layer(fmt: int = tarfile.PAX_FORMAT) -> bytes:
    entries = [
        L.dir("bin"),
        L.file(
            "bin/tool", os.urandom(20_000), mode=0o755, xattrs={"security.capability": CAPABILITY}
        ),
        L.file("bin/suid", b"#!/bin/sh\n", mode=0o4755, uid=0, gid=0),
        L.file("bin/sgid", b"g", mode=0o2755, gid=50),
        L.symlink("bin/sh", "tool"),
        L.hardlink(
            "bin/tool-again", "bin/tool", mode=0o755, xattrs={"security.capability": CAPABILITY}
        ),
        L.dir("etc", mode=0o755),
        L.file("etc/config", b"a=1\n", uid=1000, gid=1000, xattrs={"user.origin": b"base"}),
        L.file("etc/gone", b"to be removed"),
        L.dir("etc/gone-dir"),
        L.file("etc/gone-dir/x", b"x"),
        L.dir("opaque"),
        L.file("opaque/old", b"old"),
        L.dir("opaque/sub"),
        L.file("opaque/sub/old", b"old"),
        L.file("becomes-dir", b"f"),
        L.dir("becomes-file"),
        L.file("becomes-file/child", b"c"),
        L.dir("tmp", mode=0o1777),
        L.dir("dev"),
        L.char("dev/null", 1, 3),
        L.block("dev/loop9", 7, 9),
        L.fifo("dev/pipe"),
        L.dir("empty", mode=0o700, uid=12, gid=34),
        L.file("zeros", bytes(300_000)),
    ]
    if fmt != tarfile.USTAR_FORMAT:
        entries += [
            L.file("ünïcödé-名前", b"u"),
            L.dir("long-" + "d" * 120),
            L.file("long-" + "d" * 120 + "/" + "f" * 150, b"long"),
            L.file("nanos", b"n", pax={"mtime": "1700000000.987654321"}),
        ]
    return L.layer(entries, fmt=fmt)


def change_layer(cross_layer_link: bool = True) -> bytes:
    # A hardlink to a file of an earlier layer works on a merged tree but not
    # in an overlay's upper directory, for containerd as for us.
    link = [L.hardlink("bin/new-link", "bin/sgid", mode=0o2755, gid=50)] if cross_layer_link else []
    return L.layer(
        [
            L.dir("bin"),
            L.file("bin/tool", b"new tool", mode=0o750),  # the link keeps the old inode
            *link,
            L.dir("etc", mode=0o750),
            L.file("etc/config", b"a=2\n", uid=1000, gid=1000, xattrs={"user.origin": b"change"}),
            L.whiteout("etc/gone"),
            L.whiteout("etc/gone-dir"),
            L.dir("opaque"),
            L.opaque("opaque"),
            L.file("opaque/new", b"new"),
            L.dir("becomes-dir"),
            L.file("becomes-dir/inner", b"i"),
            L.file("becomes-file", b"now a file"),
            L.symlink("bin/sh", "/bin/tool"),
            L.dir("new-dir", mode=0o711),
            L.file("new-dir/deep", b"deep", uid=7, gid=8),
            L.dir("empty", mode=0o755, uid=0, gid=0),
        ]
    )


async def apply_both(
    env: Env, descs: list[Descriptor], ours: list[Mount], theirs: list[Mount]
) -> None:
    for desc in descs:
        a = await env.ours.apply(desc, ours)
        b = await env.theirs.apply(desc, theirs)
        assert a == b


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
async def test_apply_layers_onto_directories(env: Env, workdir: Path, compression: str) -> None:
    descs = [
        await env.put_layer(base_layer(), compression),
        await env.put_layer(change_layer(), compression),
    ]
    ours, theirs = workdir / "ours", workdir / "theirs"
    ours.mkdir()
    theirs.mkdir()
    await apply_both(env, descs, bind(ours), bind(theirs))
    t_ours, t_theirs = L.tree(ours), L.tree(theirs)
    assert L.diff_trees(t_ours, t_theirs) == []
    # The layers did what they say.
    assert "etc/gone" not in t_ours and "etc/gone-dir" not in t_ours
    assert sorted(p for p in t_ours if p.startswith("opaque/")) == ["opaque/new"]
    assert t_ours["bin/suid"].mode == 0o4755
    assert dict(t_ours["bin/tool-again"].xattrs) == {"security.capability": CAPABILITY}


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT], ids=["ustar", "gnu"])
async def test_tar_formats(env: Env, workdir: Path, fmt: int) -> None:
    desc = await env.put_layer(base_layer(fmt), "gzip")
    ours, theirs = workdir / "ours", workdir / "theirs"
    ours.mkdir()
    theirs.mkdir()
    await apply_both(env, [desc], bind(ours), bind(theirs))
    assert L.diff_trees(L.tree(ours), L.tree(theirs)) == []


async def test_apply_into_overlay_upper_directories(env: Env, workdir: Path) -> None:
    """The second layer goes straight into an overlay's upper directory (no mount)."""
    lower = workdir / "lower"
    lower.mkdir()
    await env.theirs.apply(await env.put_layer(base_layer(), "gzip"), bind(lower))
    change = await env.put_layer(change_layer(cross_layer_link=False), "gzip")
    trees = []
    for name, differ in (("ours", env.ours), ("theirs", env.theirs)):
        upper, work = workdir / f"{name}-upper", workdir / f"{name}-work"
        upper.mkdir()
        work.mkdir()
        mount = Mount(
            "overlay", "overlay", (f"workdir={work}", f"upperdir={upper}", f"lowerdir={lower}")
        )
        await differ.apply(change, [mount])
        trees.append(L.tree(upper, dir_mtimes=False))
    assert L.diff_trees(trees[0], trees[1]) == []
    upper_tree = trees[0]
    assert upper_tree["etc/gone"].kind == "char" and upper_tree["etc/gone"].rdev == (0, 0)
    assert dict(upper_tree["opaque"].xattrs).get("trusted.overlay.opaque") == b"y"
    # Parents created in the upper take their attributes from the lower.
    assert upper_tree["etc"].mode == 0o750


async def test_cross_layer_hardlink_into_an_overlay_upper_fails_for_both(
    env: Env, workdir: Path
) -> None:
    lower = workdir / "lower"
    lower.mkdir()
    await env.theirs.apply(await env.put_layer(base_layer(), "gzip"), bind(lower))
    change = await env.put_layer(change_layer(), "gzip")
    for name, differ in (("ours", env.ours), ("theirs", env.theirs)):
        upper, work = workdir / f"{name}-upper", workdir / f"{name}-work"
        upper.mkdir()
        work.mkdir()
        mount = Mount(
            "overlay", "overlay", (f"workdir={work}", f"upperdir={upper}", f"lowerdir={lower}")
        )
        with pytest.raises(errdefs.ErrdefsError, match="new-link"):
            await differ.apply(change, [mount])


async def test_apply_docker_media_types(env: Env, workdir: Path) -> None:
    tar = base_layer()
    for i, (media_type, compression) in enumerate(
        (
            (mediatypes.DOCKER_LAYER, "none"),
            (mediatypes.DOCKER_LAYER, "gzip"),  # "unknown": detected by magic
            (mediatypes.DOCKER_LAYER_GZIP, "gzip"),
        )
    ):
        desc = await env.put(L.compress(tar, compression), media_type)
        ours, theirs = workdir / f"ours{i}", workdir / f"theirs{i}"
        ours.mkdir()
        theirs.mkdir()
        await apply_both(env, [desc], bind(ours), bind(theirs))
        assert L.diff_trees(L.tree(ours), L.tree(theirs)) == []


async def test_unknown_media_type(env: Env, workdir: Path) -> None:
    desc = await env.put(b"{}", "application/vnd.oci.image.config.v1+json")
    # Ours answers NotImplemented so a daemon falls through to its next
    # differ; containerd 1.6 answers a plain (Unknown) "no processor" error.
    with pytest.raises(errdefs.NotImplemented):
        await env.ours.apply(desc, bind(workdir))
    with pytest.raises(errdefs.Unknown, match="no processor"):
        await env.theirs.apply(desc, bind(workdir))


async def test_missing_blob(env: Env, workdir: Path) -> None:
    desc = Descriptor(mediatypes.LAYER_GZIP, L.digest(b"absent"), 6)
    for differ in (env.ours, env.theirs):
        with pytest.raises(errdefs.NotFound):
            await differ.apply(desc, bind(workdir))


# -- Diff, then Apply -------------------------------------------------------------


def _comparable(t: dict[str, L.Node]) -> dict[str, L.Node]:
    # A diff carries only security.capability among xattrs (containerd's
    # ChangeWriter) and whole-second times.
    out = {}
    for path, n in t.items():
        xattrs = tuple(x for x in n.xattrs if x[0] == "security.capability")
        mtime = None if n.mtime_ns is None else n.mtime_ns // 10**9
        out[path] = L.Node(
            n.kind, n.mode, n.uid, n.gid, n.size, n.content, n.link, n.rdev, xattrs, mtime, n.links
        )
    return out


async def _lower_and_upper(env: Env, workdir: Path) -> tuple[Path, Path, Descriptor]:
    base = await env.put_layer(base_layer(tarfile.GNU_FORMAT), "gzip")
    change = await env.put_layer(change_layer(), "gzip")
    lower, upper = workdir / "lower", workdir / "upper"
    lower.mkdir()
    upper.mkdir()
    await env.theirs.apply(base, bind(lower))
    await env.theirs.apply(base, bind(upper))
    await env.theirs.apply(change, bind(upper))
    return lower, upper, base


@pytest.mark.parametrize("media_type", [mediatypes.LAYER_GZIP, mediatypes.LAYER, ""])
async def test_diff_then_apply_reproduces_the_upper_tree(
    env: Env, workdir: Path, media_type: str
) -> None:
    lower, upper, base = await _lower_and_upper(env, workdir)
    expected = _comparable(L.tree(upper))
    for name, differ in (("ours", env.ours), ("theirs", env.theirs)):
        desc = await differ.compare(bind(lower), bind(upper), media_type, labels={"test": name})
        assert desc.media_type == (media_type or mediatypes.LAYER_GZIP)
        info = await env.content.info(desc.digest)
        assert info.size == desc.size and info.labels["test"] == name
        if desc.media_type == mediatypes.LAYER_GZIP:
            assert info.labels[mediatypes.UNCOMPRESSED_LABEL].startswith("sha256:")
        # Both differs' layers, applied by both differs, rebuild the upper tree.
        for applier_name, applier in (("ours", env.ours), ("theirs", env.theirs)):
            target = workdir / f"{name}-by-{applier_name}"
            target.mkdir()
            await env.theirs.apply(base, bind(target))
            await applier.apply(desc, bind(target))
            got = _comparable(L.tree(target))
            assert L.diff_trees(got, expected) == [], f"{name}'s diff applied by {applier_name}"


async def test_diff_of_an_overlay_snapshot(env: Env, workdir: Path) -> None:
    """The usual shape: lower is the parent, upper an overlay on it with changes."""
    lower = workdir / "lower"
    lower.mkdir()
    base = await env.put_layer(base_layer(), "gzip")
    await env.theirs.apply(base, bind(lower))
    upper_dir, work = workdir / "upperdir", workdir / "work"
    upper_dir.mkdir()
    work.mkdir()
    overlay = [
        Mount(
            "overlay", "overlay", (f"workdir={work}", f"upperdir={upper_dir}", f"lowerdir={lower}")
        )
    ]
    change = await env.put_layer(change_layer(cross_layer_link=False), "gzip")
    await env.theirs.apply(change, overlay)
    merged = workdir / "merged-copy"
    merged.mkdir()
    await env.theirs.apply(base, bind(merged))
    await env.theirs.apply(change, bind(merged))
    expected = _comparable(L.tree(merged))
    for name, differ in (("ours", env.ours), ("theirs", env.theirs)):
        desc = await differ.compare(bind(lower), overlay)
        target = workdir / f"{name}-target"
        target.mkdir()
        await env.theirs.apply(base, bind(target))
        await env.theirs.apply(desc, bind(target))
        assert L.diff_trees(_comparable(L.tree(target)), expected) == [], name


async def test_diff_options(env: Env, workdir: Path) -> None:
    lower, upper, _ = await _lower_and_upper(env, workdir)
    # zstd is a containerd 1.7 media type for Diff; 1.6 answers NotImplemented.
    desc = await env.ours.compare(bind(lower), bind(upper), mediatypes.LAYER_ZSTD)
    assert desc.media_type == mediatypes.LAYER_ZSTD
    with pytest.raises(errdefs.NotImplemented):
        await env.theirs.compare(bind(lower), bind(upper), mediatypes.LAYER_ZSTD)
    for differ in (env.ours, env.theirs):
        with pytest.raises(errdefs.NotImplemented):
            await differ.compare(bind(lower), bind(upper), "application/x-not-a-layer")
    # A caller-chosen ref, and reproducible output with source_date_epoch (ours).
    epoch = datetime(2020, 1, 1, tzinfo=UTC)
    a = await env.ours.compare(bind(lower), bind(upper), ref="diff-ref-a", source_date_epoch=epoch)
    b = await env.ours.compare(bind(lower), bind(upper), ref="diff-ref-b", source_date_epoch=epoch)
    assert a == b
    # Diffing a tree against itself gives an empty layer.
    same = await env.ours.compare(bind(lower), bind(lower), mediatypes.LAYER)
    assert same.size == 1024
    theirs_same = await env.theirs.compare(bind(lower), bind(lower), mediatypes.LAYER)
    assert theirs_same == same
    shutil.rmtree(workdir / "upper")
