"""Bundles in the state dir: layout, id validation, atomic writes, safe removal."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from api import errdefs
from services.tasks import bundle as bundles
from services.tasks.mounts import mountpoints_under
from tests.support import is_root

SPEC = json.dumps({"ociVersion": "1.0.2-dev", "root": {"path": "rootfs"}}).encode()


def _dirs(tmp_path: Path) -> tuple[str, str]:
    return str(tmp_path / "root"), str(tmp_path / "state")


def test_layout(tmp_path: Path) -> None:
    root, state = _dirs(tmp_path)
    b = bundles.new_bundle(root, state, "ns1", "task1", SPEC)
    assert b.path == os.path.join(state, "ns1", "task1")
    assert b.work_dir == os.path.join(root, "ns1", "task1")
    assert Path(b.path, "config.json").read_bytes() == SPEC
    assert stat.S_IMODE(os.stat(b.path).st_mode) == 0o700
    assert os.path.isdir(b.rootfs) and not os.listdir(b.rootfs)
    assert os.readlink(b.file("work")) == b.work_dir
    assert os.path.isdir(b.work_dir)
    # Only what containerd puts there, and no temp file from the atomic write.
    assert sorted(os.listdir(b.path)) == ["config.json", "rootfs", "work"]


@pytest.mark.parametrize(
    "bad_id", ["", "a/b", "..", ".hidden", "-x", "x" * 77, "a b", "../../etc", "a..b"]
)
def test_bad_ids_are_rejected(tmp_path: Path, bad_id: str) -> None:
    root, state = _dirs(tmp_path)
    with pytest.raises(errdefs.InvalidArgument, match="invalid task id"):
        bundles.new_bundle(root, state, "ns1", bad_id, SPEC)
    assert not os.path.exists(state) or not any(Path(state).rglob("*"))


@pytest.mark.parametrize("bad_ns", ["", "a/b", "..", "x" * 77])
def test_bad_namespaces_are_rejected(tmp_path: Path, bad_ns: str) -> None:
    root, state = _dirs(tmp_path)
    with pytest.raises(errdefs.InvalidArgument, match="invalid namespace"):
        bundles.new_bundle(root, state, bad_ns, "task1", SPEC)
    assert not os.path.exists(state)


@pytest.mark.parametrize("spec", [b"", b"{not json", b"[1, 2]"])
def test_bad_spec_leaves_nothing(tmp_path: Path, spec: bytes) -> None:
    root, state = _dirs(tmp_path)
    with pytest.raises(errdefs.InvalidArgument, match="invalid OCI spec"):
        bundles.new_bundle(root, state, "ns1", "task1", spec)
    assert not os.path.exists(os.path.join(state, "ns1", "task1"))
    assert not os.path.exists(os.path.join(root, "ns1", "task1"))


def test_second_create_fails_and_keeps_the_first(tmp_path: Path) -> None:
    root, state = _dirs(tmp_path)
    b = bundles.new_bundle(root, state, "ns1", "task1", SPEC)
    Path(b.work_dir, "keep").write_text("x")
    with pytest.raises(errdefs.AlreadyExists):
        bundles.new_bundle(root, state, "ns1", "task1", b"{}")
    assert Path(b.path, "config.json").read_bytes() == SPEC
    assert Path(b.work_dir, "keep").read_text() == "x"


def test_stale_work_dir_is_replaced(tmp_path: Path) -> None:
    root, state = _dirs(tmp_path)
    stale = Path(root, "ns1", "task1")
    stale.mkdir(parents=True)
    (stale / "old").write_text("x")
    b = bundles.new_bundle(root, state, "ns1", "task1", SPEC)
    assert os.listdir(b.work_dir) == []


def test_delete_removes_bundle_and_work_dir(tmp_path: Path) -> None:
    root, state = _dirs(tmp_path)
    b = bundles.new_bundle(root, state, "ns1", "task1", SPEC)
    Path(b.work_dir, "data").write_text("x")
    bundles.delete_bundle(b)
    assert os.listdir(os.path.join(state, "ns1")) == []
    assert os.listdir(os.path.join(root, "ns1")) == []
    bundles.delete_bundle(b)  # a second delete is fine


def test_delete_never_follows_the_work_link(tmp_path: Path) -> None:
    root, state = _dirs(tmp_path)
    b = bundles.new_bundle(root, state, "ns1", "task1", SPEC)
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "file").write_text("keep me")
    os.unlink(b.file("work"))
    os.symlink(outside, b.file("work"))
    Path(b.path, "escape").symlink_to(outside)
    bundles.delete_bundle(b)
    assert (outside / "file").read_text() == "keep me"
    assert not os.path.exists(b.path) and not os.path.exists(b.work_dir)


def test_delete_refuses_a_full_rootfs(tmp_path: Path) -> None:
    # A rootfs with files but no mount is not the bundle's to remove
    # (containerd removes it with rmdir, never recursively).
    root, state = _dirs(tmp_path)
    b = bundles.new_bundle(root, state, "ns1", "task1", SPEC)
    Path(b.rootfs, "data").write_text("x")
    with pytest.raises(errdefs.Unknown, match="failed to remove bundle rootfs"):
        bundles.delete_bundle(b)
    assert Path(b.rootfs, "data").read_text() == "x"


def test_write_file_atomic(tmp_path: Path) -> None:
    path = str(tmp_path / "address")
    bundles.write_file_atomic(path, b"unix:///a", 0o600)
    bundles.write_file_atomic(path, b"unix:///b", 0o600)
    assert Path(path).read_bytes() == b"unix:///b"
    assert os.listdir(tmp_path) == ["address"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


@pytest.mark.root
def test_delete_unmounts_the_rootfs_and_keeps_the_source(tmp_path: Path) -> None:
    if not is_root():
        pytest.skip("needs root (mount)")
    root, state = _dirs(tmp_path)
    b = bundles.new_bundle(root, state, "ns1", "task1", SPEC)
    source = tmp_path / "image"
    source.mkdir()
    (source / "bin").mkdir()
    (source / "bin" / "file").write_text("image content")
    # Stacked and nested mounts, as a shim that died might leave them.
    _mount("-t", "tmpfs", "tmpfs", b.rootfs)
    os.mkdir(os.path.join(b.rootfs, "sub"))
    _mount("-t", "tmpfs", "tmpfs", os.path.join(b.rootfs, "sub"))
    _mount("--bind", str(source), b.rootfs)
    assert mountpoints_under(b.path)
    bundles.delete_bundle(b)
    assert not mountpoints_under(b.path)
    assert not os.path.exists(b.path)
    assert (source / "bin" / "file").read_text() == "image content"


@pytest.mark.root
def test_remove_tree_unmounts_inside_first(tmp_path: Path) -> None:
    if not is_root():
        pytest.skip("needs root (mount)")
    tree = tmp_path / "tree"
    (tree / "mnt").mkdir(parents=True)
    source = tmp_path / "source"
    source.mkdir()
    (source / "file").write_text("keep")
    _mount("--bind", str(source), str(tree / "mnt"))
    bundles.remove_tree(str(tree))
    assert not tree.exists()
    assert (source / "file").read_text() == "keep"


@pytest.mark.root
def test_remapped_root_group_reaches_the_bundle(tmp_path: Path) -> None:
    if not is_root():
        pytest.skip("needs root (chown)")
    spec = json.dumps(
        {"linux": {"gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]}}
    ).encode()
    root, state = _dirs(tmp_path)
    b = bundles.new_bundle(root, state, "ns1", "task1", spec)
    st = os.stat(b.path)
    assert st.st_gid == 100000
    assert stat.S_IMODE(st.st_mode) == 0o710
