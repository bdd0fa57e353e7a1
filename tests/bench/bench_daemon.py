"""What the daemon's relay costs: berthd against containerd, and against its plugin.

    sudo .venv/bin/python tests/bench/bench_daemon.py [--calls 2000] [--size-mib 256]

berthd runs its embedded default (plugins as supervised children); a private
containerd runs on temp dirs with its built-in content store.  Measured with
the same clients on unix sockets:

- Version: sequential unary calls answered by the daemon itself;
- Content.Info of an existing blob: sequential unary calls (berthd relays each
  to its content plugin; "plugin direct" is the same plugin's own socket);
- Content.Write + Read of one blob through one stream each (1 MiB messages).

Prints calls/s or MB/s (10^6 bytes per second) and the ratios berthd /
containerd and berthd / plugin direct.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import time
from pathlib import Path

import grpc
from google.protobuf import empty_pb2

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from api import namespaces
from api.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from api.containerd.services.version.v1 import version_pb2_grpc
from tests.bench.bench_content import MiB, bench
from tests.support import short_tmpdir
from tests.support.berthd import Berthd, embedded_toml
from tests.support.containerd import Containerd

NS = "bench"


def calls_per_s(address: str, calls: int, kind: str, digest: str) -> float:
    md = namespaces.outgoing(NS)
    with grpc.insecure_channel(f"unix://{address}") as ch:
        if kind == "version":
            version = version_pb2_grpc.VersionStub(ch)

            def one() -> None:
                version.Version(empty_pb2.Empty(), metadata=md)

        else:
            content = content_pb2_grpc.ContentStub(ch)
            req = content_pb2.InfoRequest(digest=digest)

            def one() -> None:
                content.Info(req, metadata=md)

        for _ in range(50):  # warm up the connection
            one()
        start = time.perf_counter()
        for _ in range(calls):
            one()
        return calls / (time.perf_counter() - start)


def ingest(address: str, data: bytes, digest: str) -> None:
    md = namespaces.outgoing(NS)
    with grpc.insecure_channel(f"unix://{address}") as ch:
        stub = content_pb2_grpc.ContentStub(ch)
        reqs = [
            content_pb2.WriteContentRequest(
                action=content_pb2.WriteAction.COMMIT,
                ref=f"bench-info-{digest[7:19]}",
                total=len(data),
                expected=digest,
                data=data,
            )
        ]
        try:
            for _ in stub.Write(iter(reqs), metadata=md):
                pass
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.ALREADY_EXISTS:  # berthd and its plugin share it
                raise


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--size-mib", type=int, default=256)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench_daemon: containerd and overlayfs need root", file=sys.stderr)
        return 2

    small = b"bench blob\n"
    small_digest = "sha256:" + hashlib.sha256(small).hexdigest()
    size = args.size_mib * MiB
    data = os.urandom(size)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    results: dict[str, dict[str, float]] = {}
    with (
        short_tmpdir("bnd") as d,
        Berthd(d / "b", embedded_toml(d / "b")) as b,
        Containerd(d / "c") as cd,
    ):
        targets = {
            "berthd": b.address,
            "plugin direct": str(b.state / "content.sock"),
            "containerd 1.6": cd.address,
        }
        for name, address in targets.items():
            ingest(address, small, small_digest)
            row = {"info/s": calls_per_s(address, args.calls, "info", small_digest)}
            if name != "plugin direct":
                row["version/s"] = calls_per_s(address, args.calls, "version", small_digest)
            ns = NS if name.startswith("containerd") else None  # berthd has no leases yet
            r = asyncio.run(bench(address, ns, data, digest))
            row["write MB/s"] = size / r.write_s / 1e6
            row["read MB/s"] = size / r.read_s / 1e6
            results[name] = row

    cols = ["version/s", "info/s", "write MB/s", "read MB/s"]
    print(f"{'':28}" + "".join(f"{c:>13}" for c in cols))
    for name, row in results.items():
        print(f"{name:28}" + "".join(f"{row[c]:13.1f}" if c in row else f"{'-':>13}" for c in cols))
    ours, theirs, direct = results["berthd"], results["containerd 1.6"], results["plugin direct"]
    print(f"{'ratio berthd/containerd':28}" + "".join(f"{ours[c] / theirs[c]:13.2f}" for c in cols))
    print(
        f"{'ratio berthd/plugin direct':28}"
        + "".join(f"{ours[c] / direct[c]:13.2f}" if c in direct else f"{'-':>13}" for c in cols)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
