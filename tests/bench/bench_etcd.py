"""The metadata backends side by side: SQLite, etcd with 1 member, etcd with 3 members.

    sudo .venv/bin/python tests/bench/bench_etcd.py [--ops 500] [--images 10000] [--lists 50]

All in one run, on this machine's loopback (etcd members are real
processes on temp dirs; SQLite syncs every commit, etcd every raft entry):

1. Metadata operations through the object stores (``ImageStore``,
   ``ContainerStore``) in-process, one at a time: create, get, and list of a
   namespace holding ``--ops`` objects; operations per second and p99
   latency.  Then ``--ops`` image creates from 8 concurrent callers
   (etcd transactions that conflict are retried).
2. At scale: ``--images`` images whose manifests reference 4 more blobs each
   (10,000 images = 50,000 blobs), written straight into the store (the
   bytes of manifests and configs into the content plugin's root: ``ctr``
   reads them for the size and platform columns); then a real berthd on that
   store, ``ctr images ls`` (which reads every manifest and config), and a
   full garbage collection (``ctr leases rm --sync`` of an empty lease: the
   mark walks all 50,000 blobs, nothing is removed).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from daemon.metadata import records
from daemon.metadata.containers import ContainerStore
from daemon.metadata.db import MetadataDB
from daemon.metadata.images import ImageStore
from daemon.metadata.sqlite import SqliteStore
from daemon.metadata.store import BLOBS, IMAGES, NAMESPACES, MetadataStore, Tx
from tests.metadata.berthd import etcd_toml, metadata_berthd
from tests.metadata.stores import etcd_settings, open_etcd
from tests.support import short_tmpdir
from tests.support.containerd import ctr
from tests.support.etcd import EtcdCluster

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
NS = "bench"
METADATA_ROOT = "io.containerd.metadata.v1.berthd"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[98] if len(samples) > 1 else 0.0


async def timed(n: int, op: Callable[[int], Awaitable[object]]) -> tuple[float, float]:
    """(operations/s, p99 ms) of ``n`` sequential calls."""
    lat = []
    t0 = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        await op(i)
        lat.append(time.perf_counter() - t)
    return n / (time.perf_counter() - t0), p99(lat) * 1000


async def operations(store: MetadataStore, n: int, lists: int) -> dict[str, tuple[float, float]]:
    db = MetadataDB(store)
    images, containers = ImageStore(db), ContainerStore(db)
    target = records.Descriptor(MANIFEST, "sha256:" + "a" * 64, 10)
    out: dict[str, tuple[float, float]] = {}

    async def create_image(i: int) -> None:
        await images.create(records.Image(NS, f"bench/{i}:1", target))

    out["images create"] = await timed(n, create_image)
    out["images get"] = await timed(n, lambda i: images.get(NS, f"bench/{i}:1"))
    out["images list"] = await timed(lists, lambda i: images.list(NS))

    async def create_container(i: int) -> None:
        await containers.create(records.Container(NS, f"c{i}", "io.containerd.runc.v2", b"spec"))

    out["containers create"] = await timed(n, create_container)
    out["containers get"] = await timed(n, lambda i: containers.get(NS, f"c{i}"))
    out["containers list"] = await timed(lists, lambda i: containers.list(NS))

    queue = list(range(n))

    async def worker() -> None:
        while queue:
            i = queue.pop()
            await images.create(records.Image(NS, f"par/{i}:1", target))

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(8)))
    out["images create, 8 callers"] = (n / (time.perf_counter() - t0), 0.0)
    return out


def manifest(i: int) -> tuple[bytes, bytes, dict[str, str], list[tuple[str, int]]]:
    """Image ``i``'s manifest and config bytes, the manifest's gc labels, and
    the blobs it references (config first)."""
    layers = [digest_of(f"layer {i}.{j}".encode()) for j in range(3)]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": layers},
            "config": {"Labels": {"n": str(i)}},
        }
    ).encode()
    body = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": digest_of(config), "size": len(config)},
        "layers": [
            {"mediaType": LAYER, "digest": d, "size": 1000 + j} for j, d in enumerate(layers)
        ],
    }
    data = json.dumps(body).encode()
    labels = {"containerd.io/gc.ref.content.config": digest_of(config)}
    labels |= {f"containerd.io/gc.ref.content.l.{j}": d for j, d in enumerate(layers)}
    refs = [(digest_of(config), len(config))] + [(d, 1000 + j) for j, d in enumerate(layers)]
    return data, config, labels, refs


async def populate(store: MetadataStore, count: int, content_root: Path, batch: int) -> None:
    blobs_dir = content_root / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True, exist_ok=True)
    pending: list[tuple[records.Image, list[records.Blob]]] = []
    await store.update(lambda tx: tx.put(NAMESPACES, records.Namespace(NS)))

    async def flush() -> None:
        def txn(tx: Tx, items: list[tuple[records.Image, list[records.Blob]]] = pending) -> None:
            for img, blobs in items:
                tx.put(IMAGES, img)
                for b in blobs:
                    tx.put(BLOBS, b)

        await store.update(txn)
        pending.clear()

    for i in range(count):
        data, config, labels, refs = manifest(i)
        digest = digest_of(data)
        for raw in (data, config):
            (blobs_dir / digest_of(raw).split(":")[1]).write_bytes(raw)
        img = records.Image(NS, f"scale/{i}:1", records.Descriptor(MANIFEST, digest, len(data)))
        blobs = [records.Blob(NS, digest, len(data), labels, 1, 1)]
        blobs += [records.Blob(NS, d, size, {}, 1, 1) for d, size in refs]
        pending.append((img, blobs))
        if len(pending) >= batch:
            await flush()
    if pending:
        await flush()


def at_scale(workdir: Path, open_store: Callable[[], Awaitable[MetadataStore]], extra: str,
             count: int, batch: int) -> dict[str, float]:  # fmt: skip
    async def fill() -> float:
        store = await open_store()
        t = time.perf_counter()
        try:
            await populate(store, count, workdir / "content", batch)
        finally:
            await store.close()
        return time.perf_counter() - t

    out = {"populate (s)": asyncio.run(fill())}
    b = metadata_berthd(workdir, extra)
    with b:
        b.wait_startup_gc(timeout=600)
        t = time.perf_counter()
        listed = ctr(b.address, "images", "ls", namespace=NS, timeout=600)
        out["ctr images ls (s)"] = time.perf_counter() - t
        assert len(listed.stdout.splitlines()) == count + 1, listed.stdout[-500:]
        t = time.perf_counter()
        ctr(b.address, "images", "ls", "-q", namespace=NS, timeout=600)
        out["ctr images ls -q (s)"] = time.perf_counter() - t
        ctr(b.address, "leases", "create", "--id", "gc", namespace=NS)
        t = time.perf_counter()
        ctr(b.address, "leases", "rm", "--sync", "gc", namespace=NS, timeout=600)
        out["full GC pass (s)"] = time.perf_counter() - t
        blobs = ctr(b.address, "content", "ls", "-q", namespace=NS, timeout=600).stdout.split()
        assert len(blobs) == count * 5, len(blobs)
    return out


def run_backend(
    name: str, d: Path, args: argparse.Namespace
) -> tuple[dict[str, tuple[float, float]], dict[str, float]]:
    cluster = None
    if name.startswith("etcd"):
        members = int(name[4:])
        cluster = EtcdCluster(d / f"{name}-etcd", members, "--quota-backend-bytes", str(4 << 30))
        cluster.start()
    try:
        work = d / name
        work.mkdir()
        prefix = f"/bench-{uuid.uuid4().hex[:6]}"

        async def small() -> dict[str, tuple[float, float]]:
            if cluster is None:
                store: MetadataStore = SqliteStore(work / "ops.db")
            else:
                store = await open_etcd(etcd_settings(cluster.endpoints, prefix + "-ops"))
            try:
                return await operations(store, args.ops, args.lists)
            finally:
                await store.close()

        ops = asyncio.run(small())
        print(f"{name}: operations done", file=sys.stderr)
        if not args.images:
            return ops, {}
        node = work / "node"

        async def open_store() -> MetadataStore:
            if cluster is None:
                return SqliteStore(node / "root" / METADATA_ROOT / "meta.db")
            return await open_etcd(etcd_settings(cluster.endpoints, prefix, "bench"))

        if cluster is None:
            scale = at_scale(node, open_store, "", args.images, 2000)
        else:
            extra = etcd_toml(cluster.endpoints, prefix, "bench", request_timeout="30s")
            scale = at_scale(node, open_store, extra, args.images, 7)
        print(f"{name}: scale done", file=sys.stderr)
        return ops, scale
    finally:
        if cluster is not None:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ops", type=int, default=500)
    parser.add_argument("--lists", type=int, default=50)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--backends", default="sqlite,etcd1,etcd3")
    args = parser.parse_args()
    backends = args.backends.split(",")
    ops: dict[str, dict[str, tuple[float, float]]] = {}
    scale: dict[str, dict[str, float]] = {}
    with short_tmpdir("bet") as d:
        for name in backends:
            ops[name], scale[name] = run_backend(name, d, args)

    cols = "".join(f"{b:>22}" for b in backends)
    print(f"{'operation (ops/s, p99 ms)':30}{cols}")
    for key in ops[backends[0]]:
        cells = "".join(
            f"{ops[b][key][0]:>12.0f}/s {ops[b][key][1]:>6.1f}ms"
            if ops[b][key][1]
            else f"{ops[b][key][0]:>12.0f}/s {'':>8}"
            for b in backends
        )
        print(f"{key:30}{cells}")
    if args.images:
        print(f"\n{f'{args.images} images, {5 * args.images} blobs':30}{cols}")
        for key in scale[backends[0]]:
            print(f"{key:30}" + "".join(f"{scale[b][key]:>21.2f}s" for b in backends))


if __name__ == "__main__":
    main()
