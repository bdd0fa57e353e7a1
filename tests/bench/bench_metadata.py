"""The metadata layer: berthd against containerd, with the same clients.

    sudo .venv/bin/python tests/bench/bench_metadata.py [--calls 500] [--rounds 3]

berthd runs with the metadata layer over its plugin processes (content,
native snapshotter, differ); a private containerd runs on temp dirs with its
built-in content store and native snapshotter.  Measured:

- Images.Create, Get, Delete: sequential unary calls over grpc.aio (one
  transaction each; containerd's bolt and our SQLite both sync to disk);
- Leases.Create + AddResource + Delete: sequential unary calls;
- ``ctr images import`` of a 3-layer image with unpack, then
  ``ctr images rm --sync`` (which waits for the collector to free
  everything), median wall time over the rounds.

Prints calls/s or seconds and the ratio berthd / containerd.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from api import namespaces
from api.containerd.services.images.v1 import images_pb2, images_pb2_grpc
from api.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc
from api.containerd.types import descriptor_pb2
from services.harness.server import CHANNEL_OPTIONS
from tests.metadata.berthd import metadata_berthd
from tests.support import short_tmpdir
from tests.support.containerd import Containerd, ctr
from tests.support.oci import build_image_tar

DIGEST = "sha256:" + "a" * 64
MD = namespaces.outgoing("bench")


async def image_calls(address: str, n: int) -> dict[str, float]:
    async with grpc.aio.insecure_channel(f"unix://{address}", options=CHANNEL_OPTIONS) as ch:
        stub = images_pb2_grpc.ImagesStub(ch)
        out = {}
        t = time.perf_counter()
        for i in range(n):
            img = images_pb2.Image(
                name=f"bench/{i}:1",
                target=descriptor_pb2.Descriptor(
                    media_type="application/json", digest=DIGEST, size=1
                ),
            )
            await stub.Create(images_pb2.CreateImageRequest(image=img), metadata=MD)
        out["Images.Create"] = n / (time.perf_counter() - t)
        t = time.perf_counter()
        for i in range(n):
            await stub.Get(images_pb2.GetImageRequest(name=f"bench/{i}:1"), metadata=MD)
        out["Images.Get"] = n / (time.perf_counter() - t)
        t = time.perf_counter()
        for i in range(n):
            await stub.Delete(images_pb2.DeleteImageRequest(name=f"bench/{i}:1"), metadata=MD)
        out["Images.Delete"] = n / (time.perf_counter() - t)
        return out


async def lease_calls(address: str, n: int) -> dict[str, float]:
    async with grpc.aio.insecure_channel(f"unix://{address}", options=CHANNEL_OPTIONS) as ch:
        stub = leases_pb2_grpc.LeasesStub(ch)
        t = time.perf_counter()
        for i in range(n):
            lid = f"bench-{i}"
            await stub.Create(leases_pb2.CreateRequest(id=lid), metadata=MD)
            await stub.AddResource(
                leases_pb2.AddResourceRequest(
                    id=lid, resource=leases_pb2.Resource(id=DIGEST, type="content")
                ),
                metadata=MD,
            )
            await stub.Delete(leases_pb2.DeleteRequest(id=lid), metadata=MD)
        return {"Leases.Create+AddResource+Delete": n / (time.perf_counter() - t)}


def import_rm(address: str, tar: Path, rounds: int) -> dict[str, float]:
    imports, removals = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        ctr(address, "images", "import", "--snapshotter", "native", str(tar), namespace="bench")
        imports.append(time.perf_counter() - t)
        t = time.perf_counter()
        ctr(address, "images", "rm", "--sync", "docker.io/library/bench:1", namespace="bench")
        removals.append(time.perf_counter() - t)
    return {
        "ctr images import (s)": statistics.median(imports),
        "ctr images rm --sync (s)": statistics.median(removals),
    }


def measure(address: str, tar: Path, calls: int, rounds: int) -> dict[str, float]:
    out = asyncio.run(image_calls(address, calls))
    out |= asyncio.run(lease_calls(address, calls))
    out |= import_rm(address, tar, rounds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with short_tmpdir("bbm") as d:
        tar = build_image_tar(
            d / "img.tar",
            "docker.io/library/bench:1",
            layers=[{f"f{i}": os.urandom(1 << 20) for i in range(8)}, {"etc/x": b"x"}],
        )
        with metadata_berthd(d / "b") as b:
            ours = measure(b.address, tar, args.calls, args.rounds)
        with Containerd(d / "c") as cd:
            theirs = measure(cd.address, tar, args.calls, args.rounds)
    print(f"{'measure':40} {'berthd':>12} {'containerd':>12} {'ratio':>8}")
    for key, value in ours.items():
        ratio = value / theirs[key]
        print(f"{key:40} {value:12.2f} {theirs[key]:12.2f} {ratio:8.2f}")
    print("(calls/s: higher is better; seconds: lower is better)")


if __name__ == "__main__":
    main()
