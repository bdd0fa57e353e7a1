"""``berthd-snapshotter``: the overlayfs or native snapshotter as a proxy plugin.

    berthd-snapshotter --root /var/lib/berthd/snapshotter \\
        --address /run/berthd/snapshotter.sock [--backend overlayfs|native] \\
        [--metrics-address 127.0.0.1:1339]

containerd uses it with::

    [proxy_plugins.berth]
      type = "snapshot"
      address = "/run/berthd/snapshotter.sock"
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from services.snapshotter import sdk
from services.snapshotter.native import NativeSnapshotter
from services.snapshotter.overlay import OverlaySnapshotter
from services.snapshotter.snapshotter import Snapshotter

PROG = "berthd-snapshotter"
DEFAULT_ADDRESS = "/run/berthd/snapshotter.sock"
DEFAULT_ROOT = "/var/lib/berthd/snapshotter"
BACKENDS = ("overlayfs", "native")


def build(args: argparse.Namespace) -> Snapshotter:
    if args.backend == "native":
        return NativeSnapshotter(args.root)
    return OverlaySnapshotter(args.root)


def parser() -> argparse.ArgumentParser:
    p = sdk.argument_parser(PROG, default_address=DEFAULT_ADDRESS, default_root=DEFAULT_ROOT)
    p.add_argument(
        "--backend", choices=BACKENDS, default="overlayfs", help="how snapshots are stored"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    # The backend's name labels the metrics, so it is known before parsing the rest.
    known, _ = p.parse_known_args(argv)
    return sdk.run(build, prog=PROG, name=known.backend, parser=p, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
