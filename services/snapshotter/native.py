"""The native backend: each snapshot is a full copy, mounted with a bind mount.

For filesystems overlayfs cannot sit on.  Behaves as containerd v1.6's native
snapshotter (``snapshots/native/native.go``):

- ``snapshots/<id>`` *is* the snapshot's tree; an active snapshot starts as a
  copy of its parent (owners, modes, times, xattrs, hard links kept);
- a view of a parent gets no directory of its own: it is a read-only bind
  mount of the parent's tree; a view without parent is an empty directory;
- mounts are ``bind`` with options ``rbind`` plus ``rw`` or ``ro``.

Unlike containerd 1.6's native snapshotter this one implements Cleanup
(directories that belong to no snapshot), like the overlay backend.
"""

from __future__ import annotations

from pathlib import Path

from services.snapshotter import fsutil
from services.snapshotter.local import LocalSnapshotter
from services.snapshotter.snapshotter import Kind, Mount
from services.snapshotter.storage import Snapshot, Transaction

MOUNT_TYPE = "bind"
DEFAULT_OPTIONS = ("rbind",)


class NativeSnapshotter(LocalSnapshotter):
    """Snapshots as plain directory copies under ``root``."""

    mounts_error_prefix = "failed to get snapshot mount"

    def layer_path(self, snapshot_id: str) -> Path:
        return self.snapshots_dir / snapshot_id

    def _needs_dir(self, kind: Kind, parent: str) -> bool:
        return kind == Kind.ACTIVE or not parent

    def _build(self, tx: Transaction, new_dir: Path, snapshot: Snapshot) -> None:
        if snapshot.parent_ids:
            fsutil.copy_dir(new_dir, self.layer_path(snapshot.parent_ids[0]))

    def _mounts(self, snapshot: Snapshot) -> list[Mount]:
        mode = "ro" if snapshot.kind == Kind.VIEW else "rw"
        if not snapshot.parent_ids or snapshot.kind == Kind.ACTIVE:
            source = self.layer_path(snapshot.id)
        else:
            source = self.layer_path(snapshot.parent_ids[0])
        return [Mount(type=MOUNT_TYPE, source=str(source), options=(*DEFAULT_OPTIONS, mode))]
