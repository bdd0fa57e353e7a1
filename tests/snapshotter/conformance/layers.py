"""What a chain of layers looks like through the mounts.

Ported from containerd v1.6 snapshots/testsuite (issues.go: LayerFileUpdate,
RemoveDirectoryInLowerLayer, Chown, Rename, DirectoryPermissionOnCommit;
testsuite.go: DeletedFilesInChildSnapshot, MoveFileFromLowerLayer,
ViewReadonly, RootPermission, 128LayersMount).  All need mounts, hence root.
"""

from __future__ import annotations

import errno
import os
import stat

from tests.snapshotter import fstree as fs
from tests.snapshotter.conformance import Env, scenario


@scenario
async def layer_file_update(env: Env) -> None:
    l1 = fs.apply(
        fs.create_dir("/etc", 0o700),
        fs.create_file("/etc/hosts", b"mydomain 10.0.0.1", 0o644),
        fs.create_file("/etc/profile", b"PATH=/usr/bin", 0o644),
    )
    l2 = fs.apply(
        fs.create_file("/etc/hosts", b"mydomain 10.0.0.2", 0o644),
        fs.create_file("/etc/profile", b"PATH=/usr/bin", 0o666),
        fs.create_dir("/root", 0o700),
        fs.create_file("/root/.bashrc", b"PATH=/usr/sbin:/usr/bin", 0o644),
    )
    # containerd runs this 5 times across second boundaries; twice is enough
    # to catch a layer that caches by mtime.
    for _ in range(2):
        await env.check_snapshots(l1, l2)


@scenario
async def remove_directory_in_lower_layer(env: Env) -> None:
    await env.check_snapshots(
        fs.apply(fs.create_dir("/lib", 0o700), fs.create_file("/lib/hidden", b"", 0o644)),
        fs.apply(
            fs.remove_all("/lib"),
            fs.create_dir("/lib", 0o700),
            fs.create_file("/lib/not-hidden", b"", 0o644),
        ),
        fs.apply(fs.create_file("/lib/newfile", b"", 0o644)),
    )


@scenario
async def chown(env: Env) -> None:
    await env.check_snapshots(
        fs.apply(
            fs.create_dir("/opt", 0o700),
            fs.create_dir("/opt/a", 0o700),
            fs.create_dir("/opt/a/b", 0o700),
            fs.create_file("/opt/a/b/file.txt", b"hello", 0o644),
        ),
        fs.apply(
            fs.chown("/opt", 1, 1),
            fs.chown("/opt/a", 1, 1),
            fs.chown("/opt/a/b", 1, 1),
            fs.chown("/opt/a/b/file.txt", 1, 1),
        ),
    )


@scenario
async def rename(env: Env) -> None:
    # containerd skips this one ("still fails on some kernels with overlay"):
    # renaming a lower directory answers EXDEV without redirect_dir.  Here
    # the rename falls back to a copy, as mv(1) does, and the tree is checked.
    await env.check_snapshots(
        fs.apply(
            fs.create_dir("/dir1", 0o700),
            fs.create_dir("/somefiles", 0o700),
            fs.create_file("/somefiles/f1", b"was here first!", 0o644),
            fs.create_file("/somefiles/f2", b"nothing interesting", 0o644),
        ),
        fs.apply(
            fs.rename("/dir1", "/dir2"),
            fs.create_file("/somefiles/f1-overwrite", b"new content 1", 0o644),
            fs.rename("/somefiles/f1-overwrite", "/somefiles/f1"),
            fs.rename("/somefiles/f2", "/somefiles/f3"),
        ),
    )


@scenario
async def directory_permission_on_commit(env: Env) -> None:
    await env.check_snapshots(
        fs.apply(
            fs.create_dir("/dir1", 0o700),
            fs.create_dir("/dir2", 0o700),
            fs.create_dir("/dir3", 0o700),
            fs.create_dir("/dir4", 0o700),
            fs.create_file("/dir4/f1", b"...", 0o644),
            fs.create_dir("/dir5", 0o700),
            fs.create_file("/dir5/f1", b"...", 0o644),
            fs.chown("/dir1", 1, 1),
            fs.chown("/dir2", 1, 1),
            fs.chown("/dir3", 1, 1),
            fs.chown("/dir5", 1, 1),
            fs.chown("/dir5/f1", 1, 1),
        ),
        fs.apply(
            fs.chown("/dir2", 0, 0),
            fs.remove_all("/dir3"),
            fs.chown("/dir4", 1, 1),
            fs.chown("/dir4/f1", 1, 1),
        ),
        fs.apply(
            fs.create_dir("/dir3", 0o700),
            fs.chown("/dir3", 1, 1),
            fs.remove_all("/dir5"),
            fs.create_dir("/dir5", 0o700),
            fs.chown("/dir5", 1, 1),
        ),
    )


@scenario
async def deleted_files_in_child(env: Env) -> None:
    await env.check_snapshots(
        fs.apply(
            fs.create_file("/foo", b"foo\n", 0o777),
            fs.create_file("/foobar", b"foobar\n", 0o777),
        ),
        fs.apply(fs.remove_all("/foobar")),
        fs.apply(),
    )


@scenario
async def move_file_from_lower_layer(env: Env) -> None:
    await env.check_snapshots(
        fs.apply(
            fs.create_dir("/dir1", 0o700),
            fs.create_file("/dir1/f1", b"Hello", 0o644),
            fs.create_dir("dir2", 0o700),
            fs.create_file("dir2/f2", b"...", 0o644),
        ),
        fs.apply(
            fs.create_dir("/dir3", 0o700),
            fs.create_file("/dir3/f1", b"Hello", 0o644),
            fs.remove_all("/dir1"),
            fs.link("dir2/f2", "dir3/f2"),
            fs.remove_all("dir2/f2"),
        ),
    )


@scenario
async def symlinks_and_special_files(env: Env) -> None:
    def specials(root: os.PathLike[str]) -> None:
        os.mkfifo(os.path.join(root, "fifo"), 0o600)
        os.mknod(os.path.join(root, "null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))

    await env.check_snapshots(
        fs.apply(
            fs.create_dir("/bin", 0o755),
            fs.create_file("/bin/tool", b"#!/bin/sh\n", 0o4755),
            fs.symlink("tool", "/bin/alias"),
            specials,
        ),
        fs.apply(fs.remove_all("/bin/alias"), fs.symlink("/bin/tool", "/bin/alias")),
    )


@scenario
async def view_readonly(env: Env) -> None:
    env.need_mounts()
    preparing, committed, view = env.key("preparing"), env.key("committed"), env.key("view")
    await env.sn.prepare(preparing, "", env.opt)
    await env.sn.commit(committed, preparing, env.opt)
    where = env.mount(await env.sn.view(view, committed, env.opt), "view-mount")
    try:
        (where / "testfile").write_bytes(b"testcontent")
    except OSError as e:
        assert e.errno in (errno.EROFS, errno.EPERM, errno.EACCES), e
    else:
        raise AssertionError("writing to a view should fail (EROFS)")
    env.unmount(where)
    await env.sn.remove(view)
    await env.sn.remove(committed)


@scenario
async def root_permission(env: Env) -> None:
    env.need_mounts()
    where = env.mount(await env.sn.prepare(env.key("preparing"), "", env.opt), "preparing")
    assert stat.S_IMODE(os.stat(where).st_mode) == 0o755


@scenario
async def layers_128_mount(env: Env) -> None:
    env.need_mounts()
    appliers = [
        fs.apply(
            fs.create_file("/bottom", b"way at the bottom\n", 0o777),
            fs.create_file("/overwriteme", b"FIRST!\n", 0o777),
            fs.create_dir("/ADDHERE", 0o755),
            fs.create_dir("/ONLYME", 0o755),
            fs.create_file("/ONLYME/bottom", b"bye!\n", 0o777),
        )
    ]
    for i in range(1, 128):
        appliers.append(
            fs.apply(
                fs.create_file("/overwriteme", f"{i} WAS HERE!\n".encode(), 0o777),
                fs.create_file(f"/ADDHERE/file-{i}", b"same\n", 0o755),
                fs.remove_all("/ONLYME"),
                fs.create_dir("/ONLYME", 0o755),
                fs.create_file(f"/ONLYME/file-{i}", b"only me!\n", 0o777),
            )
        )
    flat = env.dir("flat")
    parent = ""
    for i, applier in enumerate(appliers):
        key = env.key(f"prepare-layer-{i}")
        where = env.mount(await env.sn.prepare(key, parent, env.opt), f"prepare-layer-{i}")
        fs.assert_same_tree(flat, where)
        applier(flat)
        applier(where)
        fs.assert_same_tree(flat, where)
        env.unmount(where)
        parent = env.key(f"committed-{i}")
        await env.sn.commit(parent, key, env.opt)
    where = env.mount(await env.sn.view(env.key("fullview"), parent, env.opt), "fullview")
    fs.assert_same_tree(flat, where)
    env.unmount(where)
