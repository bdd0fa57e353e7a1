"""A real differ process for the federation tests: answers from fixed rules.

``--mode unimplemented`` answers every call NotImplemented (so the daemon
moves on to the next differ); ``--mode echo`` answers Apply and Diff with a
descriptor whose annotations say who served it and which namespace and
metadata arrived (so a test sees what the daemon forwarded); ``--mode slow``
echoes after ``--delay`` seconds (to watch a call drain).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import grpc

from api import errdefs
from api.containerd.services.diff.v1 import diff_pb2, diff_pb2_grpc
from api.containerd.types import descriptor_pb2
from services.harness import cli
from services.harness.server import PluginServer


class FakeDiffer(diff_pb2_grpc.DiffServicer):
    def __init__(self, name: str, mode: str, delay: float) -> None:
        self.name = name
        self.mode = mode
        self.delay = delay

    def _answer(self, ctx: grpc.aio.ServicerContext[Any, Any]) -> descriptor_pb2.Descriptor:
        if self.mode == "unimplemented":
            raise errdefs.NotImplemented(f"{self.name} does not do this")
        md = {k: v for k, v in ctx.invocation_metadata() or () if isinstance(v, str)}
        return descriptor_pb2.Descriptor(
            media_type="application/vnd.test",
            digest="sha256:" + "0" * 64,
            size=1,
            annotations={
                "served-by": self.name,
                "namespace": md.get("containerd-namespace", ""),
                "x-test": md.get("x-test", ""),
                "lease": md.get("containerd-lease", ""),
            },
        )

    async def Apply(
        self, request: diff_pb2.ApplyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> diff_pb2.ApplyResponse:
        if self.mode == "slow":
            await asyncio.sleep(self.delay)
        return diff_pb2.ApplyResponse(applied=self._answer(context))

    async def Diff(
        self, request: diff_pb2.DiffRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> diff_pb2.DiffResponse:
        return diff_pb2.DiffResponse(diff=self._answer(context))


async def _main(args: argparse.Namespace) -> None:
    server = PluginServer("fake-differ", cli.server_config(args))
    servicer = FakeDiffer(args.name, args.mode, args.delay)
    server.add_service(
        "containerd.services.diff.v1.Diff",
        lambda s: diff_pb2_grpc.add_DiffServicer_to_server(servicer, s),
    )
    await server.serve()


def main() -> int:
    parser = argparse.ArgumentParser(prog="fake-differ")
    cli.add_common_arguments(parser, default_address="/tmp/fake-differ.sock")
    parser.add_argument("--name", default="fake")
    parser.add_argument("--mode", choices=("unimplemented", "echo", "slow"), default="echo")
    parser.add_argument("--delay", type=float, default=1.5)
    return cli.run("fake-differ", parser, _main)


if __name__ == "__main__":
    sys.exit(main())
