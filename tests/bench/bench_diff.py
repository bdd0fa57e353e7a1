"""Layer apply throughput: berthd-diff against containerd's built-in walking differ.

    sudo .venv/bin/python tests/bench/bench_diff.py [--layer-mib 100] [--rounds 2]

Builds a 5-layer image of ~500 MiB (uncompressed) in two variants - random
bytes and compressible text - as gzip layers, puts the blobs into a private
containerd's content store, then unpacks the image the way a snapshotter
does: layer 1 onto a bind mount of an empty directory, each next layer into
the upper directory of an overlay whose lowers are the earlier layers.  The
same Apply requests go to containerd's diff service and to our plugin (its
own process, reading the blobs from containerd over the Content API).  Our
plugin runs once per gzip decoder: as deployed (``auto``: ISA-L when the
isal package is installed), with unpigz (what containerd uses when it is
installed) and with zlib.  Rounds alternate between the differs; the best
round of each is printed with the ratio to containerd (below 1: faster).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import random
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from services.diff import mediatypes
from services.diff.compression import GzipDecoder
from services.diff.content import ContentConnection
from services.diff.differ import Descriptor, Mount
from services.diff.proxy import ProxyDiffer
from services.harness.server import CHANNEL_OPTIONS
from tests.conformance.leases import temporary_lease
from tests.support import PYTHON, Proc, short_tmpdir, wait_for_socket
from tests.support.containerd import Containerd

MiB = 1 << 20
NAMESPACE = "bench-diff"
LAYERS = 5
# Our plugin, once per gzip decoder ("ours" as deployed: --gzip-decoder auto).
VARIANTS = {"ours": "auto", "ours-unpigz": "unpigz", "ours-zlib": "zlib"}


# -- the image ------------------------------------------------------------------


def text_pool(size: int, rng: random.Random) -> bytes:
    """Text-like bytes (words from a small vocabulary): gzip shrinks them ~3x."""
    vocabulary = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10)))
        for _ in range(3000)
    ]
    out = io.StringIO()
    written = 0
    while written < size:
        line = " ".join(rng.choices(vocabulary, k=12)) + "\n"
        out.write(line)
        written += len(line)
    return out.getvalue().encode()[:size]


def layer_tar(index: int, size: int, variant: str, pool: bytes, rng: random.Random) -> bytes:
    """About ``size`` bytes: 60% in a few large files, the rest in many small ones."""

    def data(n: int) -> bytes:
        if variant == "random":
            return os.urandom(n)
        parts = []
        while n > 0:
            piece = min(n, len(pool) // 2)
            start = rng.randrange(0, len(pool) - piece)
            parts.append(pool[start : start + piece])
            n -= piece
        return b"".join(parts)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, content: bytes | None, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000 + index
            info.mode = mode
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))

        top = f"layer{index}"
        add(top, None, 0o755)
        large = int(size * 0.6)
        for i in range(5):
            add(f"{top}/large{i}.bin", data(large // 5), 0o755)
        small_total = size - large
        written = 0
        n = 0
        while written < small_total:
            d = f"{top}/dir{n // 100:03d}"
            if n % 100 == 0:
                add(d, None, 0o755)
            chunk = data(rng.randint(4 << 10, 76 << 10))
            add(f"{d}/file{n:05d}", chunk)
            written += len(chunk)
            n += 1
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    pigz = shutil.which("pigz")
    if pigz:
        return subprocess.run(
            [pigz, "-6", "-c"], input=data, capture_output=True, check=True
        ).stdout
    import gzip

    return gzip.compress(data, compresslevel=6, mtime=0)


# -- processes ------------------------------------------------------------------


@contextlib.contextmanager
def plugin(base: Path, name: str, content_address: str, *extra: str) -> Iterator[str]:
    d = base / name
    d.mkdir()
    address = str(d / "diff.sock")
    proc = Proc(
        [
            PYTHON,
            "-m",
            "services.diff.main",
            "--address",
            address,
            "--content-address",
            content_address,
            "--root",
            str(d / "root"),
            *extra,
        ],
        d / "plugin.log",
    )
    try:
        wait_for_socket(address, proc=proc.popen)
        yield address
    finally:
        proc.stop()


async def put(
    connection: ContentConnection, md: tuple[tuple[str, str], ...], blob: bytes
) -> Descriptor:
    import hashlib

    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    store = connection.for_request(md)
    writer = await store.writer(f"bench-{uuid.uuid4().hex}", len(blob), digest)
    view = memoryview(blob)
    for i in range(max(writer.offset, 0), len(blob), 16 * MiB):  # type: ignore[attr-defined]
        await writer.write(bytes(view[i : i + 16 * MiB]))
    await writer.commit(len(blob), digest)
    return Descriptor(mediatypes.LAYER_GZIP, digest, len(blob))


async def unpack(differ: ProxyDiffer, descs: list[Descriptor], where: Path) -> float:
    """Apply the layers as a snapshotter's unpack would; answers the seconds taken."""
    uppers: list[Path] = []
    mounts_per_layer: list[list[Mount]] = []
    for i in range(len(descs)):
        upper, work = where / f"u{i}", where / f"w{i}"
        upper.mkdir(parents=True)
        work.mkdir()
        if i == 0:
            mounts = [Mount("bind", str(upper), ("rbind", "rw"))]
        else:
            lowers = ":".join(str(u) for u in reversed(uppers))
            mounts = [
                Mount(
                    "overlay",
                    "overlay",
                    (f"workdir={work}", f"upperdir={upper}", f"lowerdir={lowers}"),
                )
            ]
        uppers.append(upper)
        mounts_per_layer.append(mounts)
    await asyncio.to_thread(subprocess.run, ["sync"], check=True)
    start = time.perf_counter()
    for desc, mounts in zip(descs, mounts_per_layer, strict=True):
        await differ.apply(desc, mounts)
    return time.perf_counter() - start


@contextlib.asynccontextmanager
async def differs(
    addresses: dict[str, str], md: tuple[tuple[str, str], ...]
) -> AsyncIterator[dict[str, ProxyDiffer]]:
    async with contextlib.AsyncExitStack() as stack:
        out = {}
        for name, address in addresses.items():
            ch = grpc.aio.insecure_channel("unix://" + address, options=CHANNEL_OPTIONS)
            await stack.enter_async_context(ch)
            out[name] = ProxyDiffer(ch, metadata=md, name=name)
        yield out


async def main_async(args: argparse.Namespace) -> None:
    rng = random.Random(42)
    with short_tmpdir("bbd") as base:
        os.chmod(base, 0o755)
        runs = (
            Path(args.target_dir) / f"bench-diff-{uuid.uuid4().hex[:8]}"
            if args.target_dir
            else base / "runs"
        )
        with contextlib.ExitStack() as stack:
            cd = stack.enter_context(Containerd(base / "cd"))
            addresses = {"containerd": cd.address}
            for name, decoder in VARIANTS.items():
                if decoder == "auto" or available(decoder):
                    addresses[name] = stack.enter_context(
                        plugin(
                            base,
                            name,
                            cd.address,
                            "--gzip-decoder",
                            decoder,
                            "--allowed-root",
                            str(runs),
                        )
                    )
            ns = (("containerd-namespace", NAMESPACE),)
            async with (
                grpc.aio.insecure_channel("unix://" + cd.address) as ch,
                temporary_lease(ch, NAMESPACE) as lease,
            ):
                md = (*ns, lease)
                connection = ContentConnection(cd.address)
                pool = text_pool(16 * MiB, rng)
                results: list[tuple[str, int, int, dict[str, float]]] = []
                for variant in ("random", "compressible"):
                    descs, raw_total = [], 0
                    for i in range(LAYERS):
                        tar = layer_tar(i, args.layer_mib * MiB, variant, pool, rng)
                        raw_total += len(tar)
                        descs.append(await put(connection, md, gzip_bytes(tar)))
                    blob_total = sum(d.size for d in descs)
                    best: dict[str, float] = {}
                    async with differs(addresses, md) as ds:
                        for r in range(args.rounds):
                            for name, differ in ds.items():
                                where = runs / f"{variant}-{name}-{r}"
                                seconds = await unpack(differ, descs, where)
                                best[name] = min(best.get(name, seconds), seconds)
                                print(
                                    f"  {variant:12} round {r + 1} {name:10} {seconds:6.2f} s",
                                    flush=True,
                                )
                                shutil.rmtree(where)
                    results.append((variant, raw_total, blob_total, best))
                await connection.close()
        shutil.rmtree(runs, ignore_errors=True)
    auto = GzipDecoder.choose("auto")
    where = args.target_dir or "a temp dir on disk"
    print(
        f"apply of a {LAYERS}-layer gzip image into {where}, best of {args.rounds}, "
        f"{os.cpu_count()} CPUs; ours = {auto.kind} (auto), containerd uses "
        f"{'unpigz' if shutil.which('unpigz') else 'Go gzip'}"
    )
    names = [n for n in results[0][3] if n != "containerd"]
    header = f"{'variant':13}{'tar MiB':>9}{'gz MiB':>8}{'containerd s':>14}"
    for n in names:
        header += f"{n + ' s':>15}{'/containerd':>12}"
    print(header)
    for variant, raw, blob, best in results:
        line = f"{variant:13}{raw / MiB:9.0f}{blob / MiB:8.0f}{best['containerd']:14.2f}"
        for n in names:
            line += f"{best[n]:15.2f}{best[n] / best['containerd']:12.2f}"
        print(line)


def available(decoder: str) -> bool:
    try:
        GzipDecoder.choose(decoder)
    except ValueError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer-mib", type=int, default=100, help="uncompressed MiB per layer")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--target-dir",
        default="",
        help="where the layers are unpacked (default: a temp dir; /dev/shm takes the disk out)",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_diff: needs root (mounts, a private containerd)", file=sys.stderr)
        return 1
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
