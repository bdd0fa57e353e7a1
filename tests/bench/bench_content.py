"""Content store throughput: our plugin against containerd's built-in store.

    sudo .venv/bin/python tests/bench/bench_content.py [--size-mib 1024] [--rounds 1]

Both are driven by the same client (our ProxyContentStore over grpc.aio, the
one the daemon uses) over a unix socket: 1 GiB written through one Write
stream (1 MiB messages) and committed with its digest, then read back
through one Read stream.  Our plugin runs as its own process; containerd is a
private instance on temp dirs, with a lease so its collector keeps the blob.
Prints MB/s (10^6 bytes per second) for each and the ratio ours/containerd.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from services.content.proxy import ProxyContentStore
from services.harness.server import CHANNEL_OPTIONS
from tests.conformance.leases import temporary_lease
from tests.content.plugin import running_plugin
from tests.support import short_tmpdir
from tests.support.containerd import Containerd

MiB = 1 << 20
SLICE = 64 * MiB  # handed to writer.write at a time (sent as 1 MiB messages)


@dataclass
class Result:
    write_s: float
    read_s: float


@contextlib.asynccontextmanager
async def client(address: str, namespace: str | None) -> AsyncIterator[ProxyContentStore]:
    async with grpc.aio.insecure_channel(f"unix://{address}", options=CHANNEL_OPTIONS) as ch:
        if namespace is None:
            yield ProxyContentStore(ch)
        else:
            async with temporary_lease(ch, namespace) as lease:
                yield ProxyContentStore(ch, namespace=namespace, metadata=(lease,))


async def run_once(store: ProxyContentStore, data: bytes, digest: str) -> Result:
    ref = f"bench-{uuid.uuid4().hex}"
    view = memoryview(data)
    start = time.perf_counter()
    w = await store.writer(ref, total=len(data), expected=digest)
    for i in range(0, len(data), SLICE):
        await w.write(bytes(view[i : i + SLICE]))
    got = await w.commit(len(data), digest)
    write_s = time.perf_counter() - start
    assert got == digest, (got, digest)

    start = time.perf_counter()
    n = 0
    async with await store.reader(digest) as r:
        async for part in r.chunks():
            n += len(part)
    read_s = time.perf_counter() - start
    assert n == len(data), (n, len(data))
    await store.delete(digest)
    return Result(write_s, read_s)


async def bench(address: str, namespace: str | None, data: bytes, digest: str) -> Result:
    async with client(address, namespace) as store:
        return await run_once(store, data, digest)


def mbps(size: int, seconds: float) -> float:
    return size / seconds / 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=1, help="alternating rounds; best of each")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench_content: containerd needs root", file=sys.stderr)
        return 2

    size = args.size_mib * MiB
    print(f"generating {args.size_mib} MiB ...", flush=True)
    data = os.urandom(size)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    ours: list[Result] = []
    theirs: list[Result] = []
    with (
        short_tmpdir("bnc") as d,
        running_plugin(d / "p") as plugin,
        Containerd(d / "c") as cd,
    ):
        for _ in range(args.rounds):
            ours.append(asyncio.run(bench(plugin.address, None, data, digest)))
            theirs.append(asyncio.run(bench(cd.address, "bench", data, digest)))

    ow = max(mbps(size, r.write_s) for r in ours)
    orr = max(mbps(size, r.read_s) for r in ours)
    tw = max(mbps(size, r.write_s) for r in theirs)
    tr = max(mbps(size, r.read_s) for r in theirs)
    print(f"{'':24}{'write MB/s':>12}{'read MB/s':>12}")
    print(f"{'berthd-content':24}{ow:12.1f}{orr:12.1f}")
    print(f"{'containerd 1.6 built-in':24}{tw:12.1f}{tr:12.1f}")
    print(f"{'ratio ours/containerd':24}{ow / tw:12.2f}{orr / tr:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
