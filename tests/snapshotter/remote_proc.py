"""A plugin process whose snapshotter provides layers itself (for test_remote_layers.py).

``ProvidedLayers`` over the overlay (or native) backend, with a provider that
knows the layers found in ``--layers DIR`` (``DIR/<target>/...``) and copies
them into the prepared snapshot through its mounts.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from services.snapshotter import sdk
from services.snapshotter.native import NativeSnapshotter
from services.snapshotter.overlay import OverlaySnapshotter
from services.snapshotter.remote import ProvidedLayers
from services.snapshotter.snapshotter import Mount, Snapshotter
from tests.snapshotter import mounting


class DirectoryLayers:
    """Provides the layers that exist as directories under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.provided: list[str] = []

    async def provide(
        self, target: str, parent: str, labels: Mapping[str, str], mounts: Sequence[Mount]
    ) -> bool:
        src = self.root / target.replace("/", "_").replace(":", "_")
        if not src.is_dir():
            return False
        if len(mounts) == 1 and mounts[0].type == "bind":
            shutil.copytree(src, mounts[0].source, dirs_exist_ok=True, symlinks=True)
        else:
            with tempfile.TemporaryDirectory() as where:
                mounting.mount_all(mounts, Path(where))
                try:
                    shutil.copytree(src, where, dirs_exist_ok=True, symlinks=True)
                finally:
                    mounting.unmount(Path(where))
        self.provided.append(target)
        return True


def build(args: argparse.Namespace) -> Snapshotter:
    inner: Snapshotter
    if args.backend == "native":
        inner = NativeSnapshotter(args.root)
    else:
        inner = OverlaySnapshotter(args.root)
    return ProvidedLayers(inner, DirectoryLayers(Path(args.layers)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = sdk.argument_parser("remote-test", default_address="/tmp/remote-test.sock")
    parser.add_argument("--backend", choices=("overlayfs", "native"), default="overlayfs")
    parser.add_argument("--layers", required=True)
    return sdk.run(build, prog="remote-test", parser=parser, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
