"""``berthd-content``: the content store served as a containerd proxy plugin.

    berthd-content --root /var/lib/berthd/content --address /run/berthd/content.sock

containerd (or berthd) uses it with::

    [proxy_plugins.berth]
      type = "content"
      address = "/run/berthd/content.sock"
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
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


# glibc mallopt parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_allocator() -> None:
    """Keep 1-16 MiB message buffers on the heap between messages.

    With glibc's defaults every 1 MiB buffer of a Read or Write stream is a
    fresh mmap (or heap top that is trimmed right after), so each message
    pays for page faults: measured, this doubled the CPU a 1 GiB read costs.
    A fixed 32 MiB mmap threshold (above the 16 MiB message limit) and a
    64 MiB trim threshold let freed buffers be reused instead.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return  # not glibc
    if not (mallopt(_M_MMAP_THRESHOLD, 32 << 20) and mallopt(_M_TRIM_THRESHOLD, 64 << 20)):
        log.debug("mallopt refused the buffer tuning")


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
    tune_allocator()
    return cli.run(PROG, parser(), _main, argv)


if __name__ == "__main__":
    sys.exit(main())
