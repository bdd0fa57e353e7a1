"""A real process built from the harness alone, for the harness tests.

Serves health plus one raw-bytes method, ``/berthd.test.Slow/Sleep``, that
sleeps for the number of seconds in its request (to observe draining). With
$HARNESS_TEST_STOP_MARKER set, a shutdown hook writes that file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import grpc

from services.harness import cli
from services.harness.server import PluginServer


async def _sleep(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    await asyncio.sleep(float(request.decode()))
    return b"slept"


def _register(server: grpc.aio.Server) -> None:
    handler = grpc.method_handlers_generic_handler(
        "berthd.test.Slow", {"Sleep": grpc.unary_unary_rpc_method_handler(_sleep)}
    )
    server.add_generic_rpc_handlers((handler,))


async def _main(args: argparse.Namespace) -> None:
    server = PluginServer("harness-test", cli.server_config(args))
    server.add_service("berthd.test.Slow", _register)
    marker = os.environ.get("HARNESS_TEST_STOP_MARKER")
    if marker:
        # Lets a test see that the shutdown hooks ran.
        async def mark() -> None:
            await asyncio.to_thread(Path(marker).write_text, "hooks ran\n")

        server.on_stop.append(mark)
    await server.serve()


def main() -> int:
    parser = argparse.ArgumentParser(prog="harness-test")
    cli.add_common_arguments(parser, default_address="/tmp/harness-test.sock")
    return cli.run("harness-test", parser, _main)


if __name__ == "__main__":
    sys.exit(main())
