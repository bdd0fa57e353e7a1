"""Snapshotter latency and image unpack: our plugin against containerd's built-in overlayfs.

    sudo .venv/bin/python tests/bench/bench_snapshotter.py [--iterations 300] \\
        [--image-mib 500] [--layers 5] [--import-rounds 3]

1. RPC latency.  The same client (our ProxySnapshotter over grpc.aio, the one
   the daemon uses) runs prepare -> mounts -> commit -> remove on a fresh key,
   each on top of one committed base snapshot, ``--iterations`` times against:

   - ours:             our berthd-snapshotter (overlayfs) on its own socket;
   - containerd:       containerd's built-in overlayfs through containerd's socket;
   - ours-via-ctrd:    our plugin as containerd's proxy snapshotter "berth".

   Prints the median of each call and the ratios ours/containerd (target
   <= 1.5) and ours-via-ctrd/containerd.

2. ``ctr images import`` with unpack of an image of ``--layers`` layers,
   ``--image-mib`` MiB in total (uncompressed, 1 MiB files of random data),
   into ``--snapshotter berth`` and into ``overlayfs``, each round in a fresh
   namespace with the content collected in between, so both pay the same
   content writes.  Prints the median wall time of each and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import grpc

from api.grpc.health.v1 import health_pb2, health_pb2_grpc
from services.snapshotter.snapshotter import Snapshotter
from tests.snapshotter.conformance import grpc_snapshotter
from tests.snapshotter.plugin import Plugin
from tests.support import short_tmpdir
from tests.support.containerd import Containerd
from tests.support.oci import build_image_tar

MiB = 1 << 20
OPS = ("prepare", "mounts", "commit", "remove")
GC_ROOT = {"containerd.io/gc.root": "bench"}


async def _timed(samples: dict[str, list[float]], op: str, call: Callable[[], object]) -> None:
    start = time.perf_counter()
    await call()  # type: ignore[misc]
    samples[op].append(time.perf_counter() - start)


async def rpc_floor(address: str, iterations: int) -> float:
    """Median of an empty unary call (grpc.health.v1 Check): the runtime's share."""
    async with grpc.aio.insecure_channel("unix://" + address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        request = health_pb2.HealthCheckRequest()
        samples = []
        for _ in range(iterations + 20):
            start = time.perf_counter()
            await stub.Check(request)
            samples.append(time.perf_counter() - start)
    return statistics.median(samples[20:])


async def rpc_latency(
    address: str, snapshotter: str, namespace: str | None, iterations: int
) -> dict[str, float]:
    samples: dict[str, list[float]] = {op: [] for op in OPS}
    async with grpc_snapshotter(address, snapshotter, namespace=namespace) as sn:
        run = uuid.uuid4().hex[:8]
        base = f"bench-{run}-base"
        await sn.prepare(base + "-a", "", GC_ROOT)
        await sn.commit(base, base + "-a", GC_ROOT)
        # Warm up connections and caches.
        await _cycle(sn, f"bench-{run}-warm", base, {op: [] for op in OPS})
        for i in range(iterations):
            await _cycle(sn, f"bench-{run}-{i}", base, samples)
        await sn.remove(base)
    return {op: statistics.median(values) for op, values in samples.items()}


async def _cycle(sn: Snapshotter, key: str, base: str, samples: dict[str, list[float]]) -> None:
    await _timed(samples, "prepare", lambda: sn.prepare(key, base, GC_ROOT))
    await _timed(samples, "mounts", lambda: sn.mounts(key))
    await _timed(samples, "commit", lambda: sn.commit(key + "-c", key, GC_ROOT))
    await _timed(samples, "remove", lambda: sn.remove(key + "-c"))


def _import(cd: Containerd, image: Path, snapshotter: str, namespace: str) -> float:
    start = time.monotonic()
    cd.ctr(
        "images",
        "import",
        "--snapshotter",
        snapshotter,
        str(image),
        namespace=namespace,
        timeout=900,
    )
    elapsed = time.monotonic() - start
    # Drop the image and collect: the next round writes the content again.
    for name in cd.ctr("images", "ls", "-q", namespace=namespace).stdout.split():
        cd.ctr("images", "rm", "--sync", name, namespace=namespace, timeout=900)
    return elapsed


def _image(path: Path, total_mib: int, layers: int) -> Path:
    per_layer = max(1, total_mib // layers)
    contents = []
    for n in range(layers):
        contents.append({f"data/l{n}/f{i:04d}": os.urandom(MiB) for i in range(per_layer)})
    return build_image_tar(
        path,
        name="docker.io/library/bench:latest",
        layers=contents,
        compression="none",
        busybox=False,
    )


def _print_table(title: str, rows: dict[str, dict[str, float]], unit: str = "ms") -> None:
    print(f"\n{title}")
    names = list(rows)
    print(f"{'':10}" + "".join(f"{n:>16}" for n in names))
    scale = 1000 if unit == "ms" else 1
    for op in next(iter(rows.values())):
        print(f"{op:10}" + "".join(f"{rows[n][op] * scale:>13.3f} {unit}" for n in names))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--image-mib", type=int, default=500)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--import-rounds", type=int, default=3, help="0 skips the import part")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (containerd, overlay mounts)", file=sys.stderr)
        return 2

    with short_tmpdir("bbench") as d:
        plugin = Plugin(d / "plugin", "overlayfs").start()
        try:
            proxy = {"berth": {"type": "snapshot", "address": plugin.address}}
            with Containerd(d / "cd", proxy_plugins=proxy) as cd:
                results = {
                    "ours": asyncio.run(
                        rpc_latency(plugin.address, "berth", None, args.iterations)
                    ),
                    "containerd": asyncio.run(
                        rpc_latency(cd.address, "overlayfs", "bench", args.iterations)
                    ),
                    "ours-via-ctrd": asyncio.run(
                        rpc_latency(cd.address, "berth", "bench", args.iterations)
                    ),
                }
                _print_table(
                    f"median RPC latency, {args.iterations} iterations (same gRPC client)", results
                )
                print(
                    "\nratio ours/containerd:        "
                    + "  ".join(
                        f"{op} {results['ours'][op] / results['containerd'][op]:.2f}x" for op in OPS
                    )
                )
                print(
                    "ratio ours-via-ctrd/containerd: "
                    + "  ".join(
                        f"{op} {results['ours-via-ctrd'][op] / results['containerd'][op]:.2f}x"
                        for op in OPS
                    )
                )
                floor_ours = asyncio.run(rpc_floor(plugin.address, args.iterations))
                floor_cd = asyncio.run(rpc_floor(cd.address, args.iterations))
                print(
                    f"empty call (health Check) floor: ours {floor_ours * 1000:.3f} ms,"
                    f" containerd {floor_cd * 1000:.3f} ms ({floor_ours / floor_cd:.2f}x)"
                )
                if args.import_rounds <= 0:
                    return 0

                print(
                    f"\nbuilding a {args.layers}-layer image of ~{args.image_mib} MiB ...",
                    flush=True,
                )
                image = _image(d / "image.tar", args.image_mib, args.layers)
                print(f"image tar: {image.stat().st_size / MiB:.0f} MiB", flush=True)
                times: dict[str, list[float]] = {"berth": [], "overlayfs": []}
                for r in range(args.import_rounds):
                    for sn in ("berth", "overlayfs") if r % 2 == 0 else ("overlayfs", "berth"):
                        times[sn].append(_import(cd, image, sn, f"import-{sn}-{r}"))
                        subprocess.run(["sync"], check=False)
                medians = {sn: statistics.median(v) for sn, v in times.items()}
                print(f"\nctr images import (unpack), median of {args.import_rounds} rounds:")
                for sn, v in times.items():
                    rounds = ", ".join(f"{t:.2f}" for t in v)
                    print(f"  {sn:10} {medians[sn]:7.2f} s   (rounds: {rounds})")
                print(f"  ratio berth/overlayfs: {medians['berth'] / medians['overlayfs']:.2f}x")
        finally:
            plugin.stop()
            subprocess.run(
                [
                    "sh",
                    "-c",
                    f"grep -o ' {d}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l",
                ],
                check=False,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
