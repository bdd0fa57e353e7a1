"""Applying straight into an overlay's upper directory.

When the target is a single overlay mount, containerd skips mounting it and
extracts into ``upperdir`` with whiteouts in overlayfs's own form: a 0/0
character device for a removed name and ``trusted.overlay.opaque=y`` on an
opaque directory; missing parents take their attributes from the lower
directories (v1.6.20:diff/apply/apply_linux.go, archive/tar_opts_linux.go).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from services.diff.differ import Mount
from services.diff.rootdir import Dir
from services.diff.tarstream import Entry
from services.host import in_user_namespace

OPAQUE_XATTR = "trusted.overlay.opaque"


@dataclass(frozen=True)
class OverlayTarget:
    upper: str
    lowers: tuple[str, ...]


def overlay_target(mounts: Sequence[Mount]) -> OverlayTarget | None:
    """The upper and lower directories when ``mounts`` is one writable overlay, else None."""
    if len(mounts) != 1 or mounts[0].type != "overlay":
        return None
    upper = ""
    lowers: tuple[str, ...] = ()
    for option in mounts[0].options:
        if option.startswith("upperdir="):
            upper = option[len("upperdir=") :]
        elif option.startswith("lowerdir="):
            lowers = tuple(option[len("lowerdir=") :].split(":"))
    if not upper:
        return None
    # containerd issue 3762: whiteout devices cannot be made in a user namespace.
    if in_user_namespace():
        return None
    return OverlayTarget(upper, lowers)


class OverlayWhiteouts:
    """Whiteouts as overlayfs represents them in an upper directory."""

    def opaque(self, directory: Dir, unpacked: set[tuple[str, ...]]) -> None:
        os.setxattr(directory.fd, OPAQUE_XATTR, b"y")

    def whiteout(self, directory: Dir, name: str, entry: Entry) -> None:
        os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=directory.fd)
        os.chown(name, entry.uid, entry.gid, dir_fd=directory.fd, follow_symlinks=False)
