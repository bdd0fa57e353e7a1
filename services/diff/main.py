"""``berthd-diff``: the layer differ served as a containerd-style proxy plugin.

    berthd-diff --address /run/berthd/diff.sock --content-address /run/berthd/berthd.sock

It reads layer blobs from, and writes computed layers to, the Content API at
``--content-address`` (the daemon's socket or a content plugin's), in the
namespace and under the lease of each request; with ``--content-read-address``
(the content plugin behind the daemon) it reads the bytes of layers to apply
there, once the daemon has confirmed the request's namespace holds them.  It mounts only what lies
under an ``--allowed-root`` (the snapshotters' roots).  Temporary mounts live under
``<root>/tmpmounts``; what a crashed run left there is unmounted at start.
"""

from __future__ import annotations

import argparse
import logging
import sys

from api.containerd.services.diff.v1 import diff_pb2_grpc
from services.diff.allowed import MountGuard
from services.diff.compression import GZIP_DECODERS, GzipDecoder
from services.diff.content import ContentConnection, Metadata
from services.diff.metrics import DiffMetrics
from services.diff.mounts import Mounter
from services.diff.servicer import SERVICE_NAME, DiffServicer
from services.diff.walking import WalkingDiffer
from services.harness import cli
from services.harness.server import PluginServer

log = logging.getLogger(__name__)

PROG = "berthd-diff"
DEFAULT_ADDRESS = "/run/berthd/diff.sock"
DEFAULT_CONTENT_ADDRESS = "/run/berthd/berthd.sock"
DEFAULT_ROOT = "/var/lib/berthd/diff"
# Where berthd's snapshotters keep their snapshots by default: berthd-snapshotter's
# own default, and the overlayfs and native roots of the daemon's embedded layout.
DEFAULT_ALLOWED_ROOTS = (
    "/var/lib/berthd/snapshotter",
    "/var/lib/berthd/io.containerd.snapshotter.v1.overlayfs",
    "/var/lib/berthd/io.containerd.snapshotter.v1.native",
)


def build_server(args: argparse.Namespace) -> PluginServer:
    server = PluginServer(PROG, cli.server_config(args))
    metrics = DiffMetrics(server.registry)
    connection = ContentConnection(args.content_address, args.content_read_address)
    mounter = Mounter(args.root)
    mounter.prepare()
    gzip = GzipDecoder.choose(args.gzip_decoder)
    log.info("gzip layers decoded with %s", gzip.unpigz or gzip.kind)

    def differ_for(metadata: Metadata) -> WalkingDiffer:
        return WalkingDiffer(connection.for_request(metadata), mounter, gzip=gzip, metrics=metrics)

    guard = MountGuard(getattr(args, "allowed_root", None) or DEFAULT_ALLOWED_ROOTS)
    log.info("mounts accepted under %s", ", ".join(guard.roots))
    servicer = DiffServicer(differ_for, metrics, guard=guard)
    server.add_service(
        SERVICE_NAME, lambda s: diff_pb2_grpc.add_DiffServicer_to_server(servicer, s)
    )
    server.on_stop.append(connection.close)
    return server


async def _main(args: argparse.Namespace) -> None:
    await build_server(args).serve()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="containerd diff (layer apply and compare) proxy plugin",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    cli.add_common_arguments(p, default_address=DEFAULT_ADDRESS)
    p.add_argument(
        "--content-address",
        default=DEFAULT_CONTENT_ADDRESS,
        help="unix socket of the Content API to read and write blobs through",
    )
    p.add_argument(
        "--content-read-address",
        default=None,
        metavar="SOCK",
        help="unix socket of the content plugin holding --content-address's blobs: layers to"
        " apply are read there directly (--content-address still decides what a request sees)",
    )
    p.add_argument("--root", default=DEFAULT_ROOT, help="directory for temporary mounts")
    p.add_argument(
        "--allowed-root",
        action="append",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="accept only mounts whose paths lie under DIR (repeatable; a snapshotter's root);"
        f" default: {', '.join(DEFAULT_ALLOWED_ROOTS)}",
    )
    p.add_argument(
        "--gzip-decoder",
        choices=GZIP_DECODERS,
        default="auto",
        help="auto: isal if installed, else unpigz if on PATH (as containerd), else zlib",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    return cli.run(PROG, parser(), _main, argv)


if __name__ == "__main__":
    sys.exit(main())
