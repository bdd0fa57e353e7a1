"""The overlayfs backend: each snapshot is one overlay layer.

Layout and mounts are containerd v1.6's overlay snapshotter's
(``snapshots/overlay/overlay.go``), so mounts produced here and there are
interchangeable:

- ``snapshots/<id>/fs`` holds the snapshot's own layer (the overlay upperdir
  while active), ``snapshots/<id>/work`` the overlay workdir (active only);
- a snapshot without parents is a bind mount of its ``fs`` ("rw" or "ro");
- a view of a single committed layer is a read-only bind mount of that layer;
- everything else is one overlay mount: ``index=off`` when the kernel knows
  the option, ``userxattr`` when overlay runs inside a user namespace,
  ``workdir=``/``upperdir=`` for an active snapshot, then ``lowerdir=`` with
  the parents' layers nearest first.

Usage is measured on the ``fs`` directory when committing and recorded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from services.snapshotter import fsutil
from services.snapshotter.local import LocalSnapshotter
from services.snapshotter.snapshotter import Kind, Mount
from services.snapshotter.storage import Snapshot, Transaction

log = logging.getLogger(__name__)


class OverlaySnapshotter(LocalSnapshotter):
    """Snapshots as overlayfs layers under ``root``."""

    def __init__(
        self,
        root: str | Path,
        *,
        index_off: bool | None = None,
        userxattr: bool | None = None,
    ) -> None:
        super().__init__(root)
        self._snaps = str(self.snapshots_dir)
        # Decided once, at start, as containerd does.
        self.index_off = fsutil.supports_index_off() if index_off is None else index_off
        self.userxattr = fsutil.needs_userxattr(self.root) if userxattr is None else userxattr
        log.debug(
            "overlay snapshotter at %s: index=off %s, userxattr %s",
            self.root,
            self.index_off,
            self.userxattr,
        )

    def layer_path(self, snapshot_id: str) -> Path:
        return self.snapshots_dir / snapshot_id / "fs"

    def work_path(self, snapshot_id: str) -> Path:
        return self.snapshots_dir / snapshot_id / "work"

    def _build(self, tx: Transaction, new_dir: Path, snapshot: Snapshot) -> None:
        fs = new_dir / "fs"
        os.mkdir(fs, 0o755)
        os.chmod(fs, 0o755)  # independent of the process umask
        if snapshot.kind == Kind.ACTIVE:
            os.mkdir(new_dir / "work", 0o711)
            os.chmod(new_dir / "work", 0o711)
        if snapshot.parent_ids:
            # The new layer's root takes the owner of the parent's root, so a
            # container's rootfs is not suddenly root-owned (overlay.go).
            st = os.stat(self.layer_path(snapshot.parent_ids[0]))
            os.lchown(fs, st.st_uid, st.st_gid)

    def _mounts(self, snapshot: Snapshot) -> list[Mount]:
        # Plain string joins: this runs on every Mounts call.
        snaps = self._snaps
        if not snapshot.parent_ids:
            # Overlay needs at least one lower layer: bind the layer itself.
            mode = "ro" if snapshot.kind == Kind.VIEW else "rw"
            return [Mount(type="bind", source=f"{snaps}/{snapshot.id}/fs", options=(mode, "rbind"))]
        options: list[str] = []
        if self.index_off:
            options.append("index=off")
        if self.userxattr:
            options.append("userxattr")
        if snapshot.kind == Kind.ACTIVE:
            options.append(f"workdir={snaps}/{snapshot.id}/work")
            options.append(f"upperdir={snaps}/{snapshot.id}/fs")
        elif len(snapshot.parent_ids) == 1:
            source = f"{snaps}/{snapshot.parent_ids[0]}/fs"
            return [Mount(type="bind", source=source, options=("ro", "rbind"))]
        lower = ":".join(f"{snaps}/{pid}/fs" for pid in snapshot.parent_ids)
        options.append(f"lowerdir={lower}")
        return [Mount(type="overlay", source="overlay", options=tuple(options))]
