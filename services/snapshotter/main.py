"""``berthd-snapshotter``: the overlayfs and native snapshotters as a proxy plugin.

    berthd-snapshotter --root /var/lib/berthd/snapshotter \\
        --address /run/berthd/snapshotter.sock [--backend overlayfs|native] \\
        [--metrics-address 127.0.0.1:1339]

containerd uses it with::

    [proxy_plugins.berth]
      type = "snapshot"
      address = "/run/berthd/snapshotter.sock"

With one ``--backend`` (overlayfs when none is given) the snapshots live in
``--root`` itself and every request is served by that backend, whatever
snapshotter it names.  ``--backend`` may be repeated: one process then serves
each backend under its own name on the one socket, as containerd serves its
built-in snapshotters (every request names its snapshotter; an unknown name
is InvalidArgument), so the ``[proxy_plugins]`` entries using the socket must
be named after the backends.  Each backend then keeps its snapshots where
containerd keeps its built-in ones: ``<root>/io.containerd.snapshotter.v1.<name>``
(with ``--root /var/lib/berthd`` the overlayfs root is the one a single
overlayfs process of the embedded default used).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from api import errdefs
from services.harness import cli
from services.snapshotter import sdk
from services.snapshotter.local import METADATA_FILE
from services.snapshotter.native import NativeSnapshotter
from services.snapshotter.overlay import OverlaySnapshotter
from services.snapshotter.snapshotter import Snapshotter

PROG = "berthd-snapshotter"
DEFAULT_ADDRESS = "/run/berthd/snapshotter.sock"
DEFAULT_ROOT = "/var/lib/berthd/snapshotter"
BACKENDS = ("overlayfs", "native")
DEFAULT_BACKEND = "overlayfs"
# containerd's plugin type: its root for a snapshotter NAME is <root>/<type>.<NAME>.
PLUGIN_TYPE = "io.containerd.snapshotter.v1"


def backend_roots(backends: Sequence[str] | None, root: str | Path) -> dict[str, Path]:
    """Where each backend keeps its snapshots (see the module docstring).

    InvalidArgument for a backend named twice; FailedPrecondition when
    several backends would share a ``root`` that holds one backend's
    snapshots (they would silently be left behind).
    """
    names = list(backends or (DEFAULT_BACKEND,))
    root = Path(root)
    if len(names) == 1:
        return {names[0]: root}
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise errdefs.InvalidArgument(f"--backend {twice[0]} given more than once")
    if (root / METADATA_FILE).exists():
        raise errdefs.FailedPrecondition(
            f"--root {root} holds the snapshots of a single backend ({METADATA_FILE});"
            f" with several --backend, --root is the directory holding each backend's"
            f" root {PLUGIN_TYPE}.<backend>"
        )
    return {name: root / f"{PLUGIN_TYPE}.{name}" for name in names}


def build(name: str, root: Path) -> Snapshotter:
    if name == "native":
        return NativeSnapshotter(root)
    return OverlaySnapshotter(root)


async def _main(args: argparse.Namespace) -> None:
    roots = backend_roots(args.backend, args.root)
    config = cli.server_config(args)
    if len(roots) == 1:
        [(name, root)] = roots.items()
        server = sdk.create_server(build(name, root), config, name=name, process_name=PROG)
    else:
        snapshotters = {name: build(name, root) for name, root in roots.items()}
        server = sdk.create_named_server(snapshotters, config, process_name=PROG)
    await server.serve()


def parser() -> argparse.ArgumentParser:
    p = sdk.argument_parser(PROG, default_address=DEFAULT_ADDRESS, default_root=DEFAULT_ROOT)
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        action="append",
        help=f"how snapshots are stored ({DEFAULT_BACKEND}); repeat to serve several,"
        f" each by its name, under <root>/{PLUGIN_TYPE}.<backend>",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(PROG, parser(), _main, argv)


if __name__ == "__main__":
    sys.exit(main())
