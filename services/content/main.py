"""``berthd-content``: the content store served as a containerd proxy plugin.

    berthd-content --root /var/lib/berthd/content --address /run/berthd/content.sock

containerd (or berthd) uses it with::

    [proxy_plugins.berth]
      type = "content"
      address = "/run/berthd/content.sock"
"""

from __future__ import annotations

import argparse
import logging
import sys

from api.containerd.services.content.v1 import content_pb2_grpc
from services.content.local import LocalContentStore
from services.content.metrics import ContentMetrics
from services.content.servicer import SERVICE_NAME, ContentServicer
from services.harness import cli
from services.harness.server import PluginServer

log = logging.getLogger(__name__)

PROG = "berthd-content"
DEFAULT_ADDRESS = "/run/berthd/content.sock"
DEFAULT_ROOT = "/var/lib/berthd/content"


def build_server(args: argparse.Namespace) -> PluginServer:
    server = PluginServer(PROG, cli.server_config(args))
    store = LocalContentStore(args.root)
    metrics = ContentMetrics(server.registry, usage=store.usage, disk_space=store.disk_space)
    servicer = ContentServicer(store, metrics)
    server.add_service(
        SERVICE_NAME, lambda s: content_pb2_grpc.add_ContentServicer_to_server(servicer, s)
    )
    return server


async def _main(args: argparse.Namespace) -> None:
    await build_server(args).serve()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="containerd content store proxy plugin",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    cli.add_common_arguments(p, default_address=DEFAULT_ADDRESS)
    p.add_argument("--root", default=DEFAULT_ROOT, help="directory holding blobs and ingests")
    return p


def main(argv: list[str] | None = None) -> int:
    return cli.run(PROG, parser(), _main, argv)


if __name__ == "__main__":
    sys.exit(main())
