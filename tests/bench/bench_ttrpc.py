"""Unary round-trip latency: our ttrpc against grpc.aio, same message, same process pair.

    .venv/bin/python tests/bench/bench_ttrpc.py [--calls 5000] [--rounds 3] [--concurrency 64]

A server process serves one echo method (google.protobuf.StringValue, 8
bytes) twice: over ttrpc (api.ttrpc.Server) and over gRPC (grpc.aio), each
on its own unix socket.  This process calls it sequentially with
api.ttrpc.Client and with a grpc.aio channel, alternating rounds, and times
every call.  Prints the median and p99 latency of each and the ratio
ttrpc / gRPC (the target is <= 0.25), then the throughput with
``--concurrency`` calls in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from google.protobuf import wrappers_pb2

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from api.ttrpc import Client, Context, Method, Server
from tests.support import PYTHON, Proc, short_tmpdir, wait_for_socket

SERVICE = "berthd.bench.Echo"
GRPC_METHOD = f"/{SERVICE}/Echo"
MESSAGE = wrappers_pb2.StringValue(value="ping1234")

Call = Callable[[], Awaitable[object]]


# -- the server process ---------------------------------------------------------


async def echo(request: wrappers_pb2.StringValue, ctx: Context) -> wrappers_pb2.StringValue:
    return request


async def grpc_echo(
    request: wrappers_pb2.StringValue, context: grpc.aio.ServicerContext[object, object]
) -> wrappers_pb2.StringValue:
    return request


async def serve(directory: Path) -> None:
    server = Server()
    server.register(SERVICE, {"Echo": Method(wrappers_pb2.StringValue, echo)})
    await server.serve_unix(str(directory / "ttrpc.sock"))
    gserver = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Echo": grpc.unary_unary_rpc_method_handler(
                grpc_echo,
                request_deserializer=wrappers_pb2.StringValue.FromString,
                response_serializer=wrappers_pb2.StringValue.SerializeToString,
            )
        },
    )
    gserver.add_generic_rpc_handlers((handler,))
    gserver.add_insecure_port(f"unix://{directory / 'grpc.sock'}")
    await gserver.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.close()
    await gserver.stop(0)


# -- the client (this process) ------------------------------------------------------


async def timed(call: Call, n: int) -> list[float]:
    """Latency of ``n`` sequential calls, in microseconds."""
    out = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t = clock()
        await call()
        out.append((clock() - t) / 1000)
    return out


async def throughput(call: Call, n: int, concurrency: int) -> float:
    """Calls per second with ``concurrency`` callers sharing the connection."""

    async def worker(k: int) -> None:
        for _ in range(k):
            await call()

    t = time.perf_counter()
    await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
    return (n // concurrency) * concurrency / (time.perf_counter() - t)


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


async def bench(directory: Path, calls: int, rounds: int, concurrency: int) -> None:
    client = await Client.connect(str(directory / "ttrpc.sock"))
    channel = grpc.aio.insecure_channel(f"unix://{directory / 'grpc.sock'}")
    grpc_call = channel.unary_unary(
        GRPC_METHOD,
        request_serializer=wrappers_pb2.StringValue.SerializeToString,
        response_deserializer=wrappers_pb2.StringValue.FromString,
    )

    async def ttrpc_once() -> object:
        return await client.call(SERVICE, "Echo", MESSAGE, wrappers_pb2.StringValue)

    async def grpc_once() -> object:
        return await grpc_call(MESSAGE)

    impls: dict[str, Call] = {"ttrpc": ttrpc_once, "grpc": grpc_once}
    for call in impls.values():  # warm up both paths
        assert await call() == MESSAGE
        await timed(call, 500)
    samples: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(rounds):
        for name, call in impls.items():
            samples[name] += await timed(call, calls)
    rates = {name: await throughput(call, calls, concurrency) for name, call in impls.items()}
    await client.close()
    await channel.close()

    t, g = samples["ttrpc"], samples["grpc"]
    print(f"unary round trip, {len(t)} calls each, StringValue of {MESSAGE.ByteSize()} bytes")
    print(f"{'':10}{'ttrpc':>12}{'gRPC':>12}{'ttrpc/gRPC':>12}")
    for label, f in (("median", statistics.median), ("p99", p99)):
        print(f"{label + ' us':10}{f(t):12.1f}{f(g):12.1f}{f(t) / f(g):12.2f}")
    ratio = rates["ttrpc"] / rates["grpc"]
    print(
        f"{'calls/s':10}{rates['ttrpc']:12.0f}{rates['grpc']:12.0f}{ratio:12.2f}"
        f"   ({concurrency} in flight)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=5000, help="calls per round and protocol")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the server process
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return 0
    with short_tmpdir("ttb") as d:
        server = Proc([PYTHON, os.path.abspath(__file__), "--serve", str(d)], d / "server.log")
        try:
            wait_for_socket(d / "ttrpc.sock", proc=server.popen)
            wait_for_socket(d / "grpc.sock", proc=server.popen)
            asyncio.run(bench(d, args.calls, args.rounds, args.concurrency))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
