"""OCI bundles in the state directory, laid out as containerd's runtime/v2 bundle.go.

``<state>/<namespace>/<id>/`` holds ``config.json`` (the container's spec),
``rootfs/`` (the shim mounts the rootfs mounts here), ``work`` (a symlink to
the persistent ``<root>/<namespace>/<id>`` work directory) and, once a shim
runs, the files the shim and the manager leave: ``address``,
``shim-binary-path``, ``log`` (a FIFO), the runc shim's ``init.pid``,
``options.json``, ``runtime``.

Every function here blocks; the manager calls them from a thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass

from api import errdefs, identifiers
from services.tasks import mounts

__all__ = [
    "ADDRESS_FILE",
    "CONFIG_FILE",
    "LOG_FILE",
    "SHIM_BINARY_FILE",
    "Bundle",
    "delete_bundle",
    "load_bundle",
    "new_bundle",
    "remove_tree",
    "write_file_atomic",
]

CONFIG_FILE = "config.json"
ADDRESS_FILE = "address"
SHIM_BINARY_FILE = "shim-binary-path"
LOG_FILE = "log"


@dataclass(frozen=True)
class Bundle:
    """Where one task's bundle and work directory live."""

    id: str
    namespace: str
    path: str
    work_dir: str

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    @property
    def rootfs(self) -> str:
        return os.path.join(self.path, "rootfs")


def _validate(namespace: str, id: str) -> None:
    try:
        identifiers.validate(namespace)
    except errdefs.InvalidArgument as e:
        raise errdefs.InvalidArgument(f"invalid namespace {namespace!r}: {e.message}") from None
    try:
        identifiers.validate(id)
    except errdefs.InvalidArgument as e:
        raise errdefs.InvalidArgument(f"invalid task id {id!r}: {e.message}") from None


def load_bundle(root: str, state: str, namespace: str, id: str) -> Bundle:
    """The bundle of ``id`` (nothing is read).  InvalidArgument for a bad namespace or id."""
    _validate(namespace, id)
    return Bundle(
        id=id,
        namespace=namespace,
        path=os.path.join(os.path.abspath(state), namespace, id),
        work_dir=os.path.join(os.path.abspath(root), namespace, id),
    )


def _remapped_gid(spec: bytes) -> int:
    """The host gid that container gid 0 maps to; 0 without a user namespace mapping."""
    try:
        doc = json.loads(spec)
    except ValueError as e:
        raise errdefs.InvalidArgument(f"invalid OCI spec: {e}") from None
    if not isinstance(doc, dict):
        raise errdefs.InvalidArgument("invalid OCI spec: not a JSON object")
    linux = doc.get("linux") or {}
    if not isinstance(linux, dict):
        return 0
    for mapping in linux.get("gidMappings") or ():
        if isinstance(mapping, dict) and mapping.get("containerID", 0) == 0:
            return int(mapping.get("hostID", 0))
    return 0


def write_file_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` by a synced temp file: a reader sees old or new, never half."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def new_bundle(root: str, state: str, namespace: str, id: str, spec: bytes) -> Bundle:
    """Create the bundle and a fresh work directory for task ``id``.

    The bundle directory is created first, exclusively: a second create of
    the same id fails before touching anything.  A crash part-way leaves a
    bundle without ``address``, which the manager's load removes.

    Raises InvalidArgument for a bad namespace, id or spec (not a JSON
    object), AlreadyExists when the bundle is already there, Unknown when
    the filesystem refuses.
    """
    b = load_bundle(root, state, namespace, id)
    gid = _remapped_gid(spec)
    os.makedirs(os.path.dirname(b.path), mode=0o711, exist_ok=True)
    try:
        os.mkdir(b.path, 0o700)
    except FileExistsError:
        raise errdefs.AlreadyExists(f"bundle {b.path}") from None
    ok = False
    try:
        if gid:
            # The remapped root must reach the bundle (containerd's bundle_linux.go).
            os.chown(b.path, -1, gid)
            os.chmod(b.path, 0o710)
        os.makedirs(os.path.dirname(b.work_dir), mode=0o711, exist_ok=True)
        os.mkdir(b.rootfs, 0o711)
        try:
            os.mkdir(b.work_dir, 0o711)
        except FileExistsError:
            # A work dir no task owns any more: start clean, as containerd does.
            remove_tree(b.work_dir)
            os.mkdir(b.work_dir, 0o711)
        os.symlink(b.work_dir, b.file("work"))
        write_file_atomic(b.file(CONFIG_FILE), spec, 0o666)
        ok = True
    except OSError as e:
        raise errdefs.Unknown(f"create bundle {b.path}: {e}") from None
    finally:
        if not ok:
            with contextlib.suppress(OSError, errdefs.ErrdefsError):
                delete_bundle(b)
    return b


def remove_tree(path: str) -> None:
    """Remove ``path`` without ever leaving it: symlinks are unlinked, never
    followed, and anything still mounted below is unmounted first.

    Raises OSError when a mount below cannot be removed.
    """
    if not os.path.lexists(path):
        return
    mounts.unmount_recursive(path)
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
        return
    # rmtree works from directory fds with O_NOFOLLOW on Linux, so a
    # symlink inside (``work``) is removed as a link.
    if not shutil.rmtree.avoids_symlink_attacks:  # pragma: no cover - Linux has it
        raise OSError("refusing to remove a tree without symlink-safe rmtree")
    shutil.rmtree(path)


def _atomic_delete(path: str) -> None:
    """Rename ``path`` to a hidden sibling, then remove that (a reader never
    sees a half-removed bundle under its real name)."""
    hidden = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}")
    try:
        os.rename(path, hidden)
    except FileNotFoundError:
        return
    except OSError:
        # A leftover hidden copy from an earlier failed removal is in the way.
        remove_tree(hidden)
        os.rename(path, hidden)
    remove_tree(hidden)


def delete_bundle(b: Bundle) -> None:
    """Unmount the rootfs, remove the bundle and the work directory.

    The work directory removed is the one computed from root, namespace
    and id, not whatever the ``work`` link points at, so a tampered link
    cannot send the removal elsewhere.  Missing pieces are fine.

    Raises Unknown when the rootfs stays mounted or a removal fails.
    """
    try:
        mounts.unmount_recursive(b.rootfs)
    except OSError as e:
        raise errdefs.Unknown(f"unmount rootfs {b.rootfs}: {e}") from None
    try:
        os.rmdir(b.rootfs)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise errdefs.Unknown(f"failed to remove bundle rootfs: {e}") from None
    errors = []
    for path in (b.path, b.work_dir):
        try:
            _atomic_delete(path)
        except OSError as e:
            errors.append(f"{path}: {e}")
    if errors:
        raise errdefs.Unknown("failed to remove bundle: " + "; ".join(errors))
