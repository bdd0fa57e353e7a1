"""The overlayfs and native backends in-process: layout, exact mounts, crash safety, cleanup.

The mounts are compared with what containerd v1.6.20's overlay.go and
native.go return for the same snapshot graph, option by option.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from api import errdefs
from services.host import in_user_namespace
from services.snapshotter import fsutil, local
from services.snapshotter.native import NativeSnapshotter
from services.snapshotter.overlay import OverlaySnapshotter
from services.snapshotter.snapshotter import Kind, Mount, Usage
from tests.support import need_root


async def _graph(sn: OverlaySnapshotter | NativeSnapshotter) -> None:
    """c1 (id 1) <- c2 (id 2) <- c3 (id 3): a commit keeps the active snapshot's id."""
    await sn.prepare("c1-a")
    await sn.commit("c1", "c1-a")
    await sn.prepare("c2-a", "c1")
    await sn.commit("c2", "c2-a")
    await sn.prepare("c3-a", "c2")
    await sn.commit("c3", "c3-a")


async def test_overlay_mounts_as_containerd(tmp_path: Path) -> None:
    sn = OverlaySnapshotter(tmp_path, index_off=True, userxattr=False)
    snaps = f"{tmp_path}/snapshots"
    await _graph(sn)  # ids 1, 2, 3
    # No parent: a bind mount of the layer itself.
    assert await sn.prepare("a0") == [Mount("bind", f"{snaps}/4/fs", ("rw", "rbind"))]
    assert await sn.view("v0") == [Mount("bind", f"{snaps}/5/fs", ("ro", "rbind"))]
    # One parent, active: overlay with work and upper dirs.
    assert await sn.prepare("a1", "c1") == [
        Mount(
            "overlay",
            "overlay",
            (
                "index=off",
                f"workdir={snaps}/6/work",
                f"upperdir={snaps}/6/fs",
                f"lowerdir={snaps}/1/fs",
            ),
        )
    ]
    # A view of one layer: read-only bind mount of that layer.
    assert await sn.view("v1", "c1") == [Mount("bind", f"{snaps}/1/fs", ("ro", "rbind"))]
    # A view of several: overlay, lowerdir nearest first, no upper.
    assert await sn.view("v3", "c3") == [
        Mount(
            "overlay", "overlay", ("index=off", f"lowerdir={snaps}/3/fs:{snaps}/2/fs:{snaps}/1/fs")
        )
    ]
    assert (await sn.prepare("a3", "c3"))[0].options[-1] == (
        f"lowerdir={snaps}/3/fs:{snaps}/2/fs:{snaps}/1/fs"
    )
    # Mounts gives the same answer later.
    assert await sn.mounts("v3") == await sn.mounts("v3")
    assert (await sn.mounts("a1"))[0].options[1] == f"workdir={snaps}/6/work"
    await sn.close()


async def test_overlay_option_variants(tmp_path: Path) -> None:
    sn = OverlaySnapshotter(tmp_path, index_off=False, userxattr=True)
    await _graph(sn)
    (m,) = await sn.prepare("a", "c2")
    assert m.options[0] == "userxattr"
    assert not any(o.startswith("index") for o in m.options)
    # Single-layer binds take no overlay options at all.
    assert (await sn.view("v", "c1"))[0].options == ("ro", "rbind")
    await sn.close()


async def test_overlay_layout(tmp_path: Path) -> None:
    sn = OverlaySnapshotter(tmp_path)
    await sn.prepare("a")
    await sn.view("v")
    snaps = tmp_path / "snapshots"
    assert sorted(os.listdir(snaps / "1")) == ["fs", "work"]
    assert sorted(os.listdir(snaps / "2")) == ["fs"]
    assert stat.S_IMODE(os.stat(snaps / "1" / "fs").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(snaps / "1" / "work").st_mode) == 0o711
    assert stat.S_IMODE(os.stat(snaps).st_mode) == 0o700
    assert (tmp_path / local.METADATA_FILE).exists()
    # Kernel probes as containerd makes them.
    assert sn.index_off == os.path.exists("/sys/module/overlay/parameters/index")
    if not in_user_namespace():
        assert sn.userxattr is False
    await sn.close()


async def test_native_mounts_as_containerd(tmp_path: Path) -> None:
    sn = NativeSnapshotter(tmp_path)
    snaps = f"{tmp_path}/snapshots"
    await _graph(sn)
    assert await sn.prepare("a0") == [Mount("bind", f"{snaps}/4", ("rbind", "rw"))]
    assert await sn.view("v0") == [Mount("bind", f"{snaps}/5", ("rbind", "ro"))]
    assert await sn.prepare("a1", "c2") == [Mount("bind", f"{snaps}/6", ("rbind", "rw"))]
    # A view of a parent has no directory of its own: it binds the parent.
    assert await sn.view("v3", "c3") == [Mount("bind", f"{snaps}/3", ("rbind", "ro"))]
    assert not os.path.exists(f"{snaps}/7")
    await sn.remove("v3")  # nothing to delete, still fine
    await sn.close()


async def test_native_copies_parent(tmp_path: Path) -> None:
    sn = NativeSnapshotter(tmp_path / "root")
    (m,) = await sn.prepare("a")
    src = Path(m.source)
    (src / "d").mkdir(mode=0o750)
    os.chmod(src / "d", 0o750)
    (src / "d" / "f").write_bytes(b"data")
    os.chmod(src / "d" / "f", 0o640)
    os.link(src / "d" / "f", src / "hard")
    os.symlink("d/f", src / "sym")
    os.mkfifo(src / "fifo")
    await sn.commit("c", "a")
    (m2,) = await sn.prepare("b", "c")
    dst = Path(m2.source)
    assert (dst / "d" / "f").read_bytes() == b"data"
    assert stat.S_IMODE(os.stat(dst / "d").st_mode) == 0o750
    assert stat.S_IMODE(os.stat(dst / "d" / "f").st_mode) == 0o640
    assert os.stat(dst / "hard").st_ino == os.stat(dst / "d" / "f").st_ino
    assert os.readlink(dst / "sym") == "d/f"
    assert stat.S_ISFIFO(os.lstat(dst / "fifo").st_mode)
    assert os.stat(dst / "d" / "f").st_mtime_ns == os.stat(src / "d" / "f").st_mtime_ns
    await sn.close()


@pytest.mark.root
async def test_overlay_new_layer_takes_parent_owner(tmp_path: Path) -> None:
    need_root()
    sn = OverlaySnapshotter(tmp_path)
    await sn.prepare("a")
    os.chown(tmp_path / "snapshots" / "1" / "fs", 1234, 4321)
    await sn.commit("c", "a")
    await sn.prepare("b", "c")
    st = os.stat(tmp_path / "snapshots" / "2" / "fs")
    assert (st.st_uid, st.st_gid) == (1234, 4321)
    await sn.close()


async def test_usage_recorded_at_commit(tmp_path: Path) -> None:
    sn = OverlaySnapshotter(tmp_path)
    await sn.prepare("a")
    upper = tmp_path / "snapshots" / "1" / "fs"
    (upper / "f").write_bytes(b"x" * 10000)
    os.link(upper / "f", upper / "g")  # hard links count once
    live = await sn.usage("a")
    assert live.inodes == 2
    assert live == fsutil.disk_usage(upper)
    await sn.commit("c", "a")
    (upper / "late").write_bytes(b"y" * 10000)
    assert await sn.usage("c") == live  # recorded, not re-measured
    await sn.close()


async def test_remove_deletes_directories_and_cleanup_orphans(tmp_path: Path) -> None:
    sn = OverlaySnapshotter(tmp_path)
    await sn.prepare("a")
    await sn.prepare("b")
    snaps = tmp_path / "snapshots"
    await sn.remove("a")
    # Moved aside at once, deleted in the background (close/cleanup wait for it).
    assert not (snaps / "1").exists()
    await sn.cleanup()
    assert sorted(os.listdir(snaps)) == ["2"]
    # Leftovers of a crash: an unfinished temp dir and an unrecorded id.
    (snaps / "new-123abc" / "fs").mkdir(parents=True)
    (snaps / "77" / "fs").mkdir(parents=True)
    await sn.cleanup()
    assert sorted(os.listdir(snaps)) == ["2"]
    assert (await sn.stat("b")).kind == Kind.ACTIVE
    await sn.close()


async def test_crash_between_rename_and_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The directory got its final name but the transaction never committed."""
    sn = OverlaySnapshotter(tmp_path)
    await sn.prepare("a")
    real_rename = os.rename

    def rename_then_crash(src: str | Path, dst: str | Path) -> None:
        real_rename(src, dst)
        raise OSError("simulated crash after rename")

    monkeypatch.setattr(os, "rename", rename_then_crash)
    with pytest.raises(OSError, match="simulated"):
        await sn.prepare("b")
    monkeypatch.setattr(os, "rename", real_rename)
    snaps = tmp_path / "snapshots"
    # Metadata does not know "b"; its directory is the only disagreement...
    with pytest.raises(errdefs.NotFound):
        await sn.stat("b")
    assert sorted(os.listdir(snaps)) == ["1", "2"]
    # ...and the id is handed out again: the stale directory is replaced.
    (snaps / "2" / "fs" / "stale").write_text("old")
    await sn.prepare("c")
    assert sorted(os.listdir(snaps)) == ["1", "2"]
    assert not (snaps / "2" / "fs" / "stale").exists()
    await sn.close()


async def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    sn = NativeSnapshotter(tmp_path)
    await sn.prepare("a")
    await sn.commit("c", "a")
    # A parent whose directory vanished cannot be copied: no record, no dir.
    os.rename(tmp_path / "snapshots" / "1", tmp_path / "moved")
    with pytest.raises(OSError):
        await sn.prepare("b", "c")
    os.rename(tmp_path / "moved", tmp_path / "snapshots" / "1")
    with pytest.raises(errdefs.NotFound):
        await sn.stat("b")
    assert sorted(os.listdir(tmp_path / "snapshots")) == ["1"]
    await sn.close()


async def test_commit_and_remove_errors_name_containerd_context(tmp_path: Path) -> None:
    sn = OverlaySnapshotter(tmp_path)
    await _graph(sn)
    await sn.view("v", "c1")
    with pytest.raises(errdefs.FailedPrecondition) as exc:
        await sn.commit("x", "v")
    assert (
        str(exc.value)
        == 'failed to commit snapshot: snapshot "v" is not active: failed precondition'
    )
    with pytest.raises(errdefs.FailedPrecondition) as exc2:
        await sn.remove("c1")
    assert (
        str(exc2.value)
        == "failed to remove: cannot remove snapshot with child: failed precondition"
    )
    with pytest.raises(errdefs.FailedPrecondition) as exc3:
        await sn.mounts("c1")
    assert str(exc3.value).startswith("failed to get active mount: requested snapshot c1")
    with pytest.raises(errdefs.NotFound) as exc4:
        await sn.prepare("y", "nope")
    assert str(exc4.value) == 'failed to create snapshot: missing parent "nope" bucket: not found'
    await sn.close()


def test_disk_usage_counts_blocks_and_inodes(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"z" * 8192)
    (tmp_path / "d").mkdir()
    os.link(tmp_path / "a", tmp_path / "d" / "b")
    os.symlink("a", tmp_path / "s")
    usage = fsutil.disk_usage(tmp_path)
    assert usage.inodes == 4  # root, a (= d/b), d, s
    expected = sum(
        os.lstat(p).st_blocks * 512
        for p in (tmp_path, tmp_path / "a", tmp_path / "d", tmp_path / "s")
    )
    assert usage == Usage(size=expected, inodes=4)
    with pytest.raises(FileNotFoundError):
        fsutil.disk_usage(tmp_path / "missing")
