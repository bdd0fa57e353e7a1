"""Hostile filters against a loaded daemon: how long do other clients wait?

    sudo .venv/bin/python tests/bench/bench_filters.py [--objects 10000] [--heavy-seconds 10]

berthd runs its embedded default on temp dirs. The bench creates ``--objects``
leases, each with a label ``a`` whose value fills containerd's 4 KiB label
limit, then lists them with filters while a second client calls Version
back to back (what ``ctr version`` does) and records each call's latency:

- ``baseline``: no list running;
- ``plain``: ``labels.a==x`` (no regexp; matched on the event loop in slices);
- ``(a+)+$``: exponential for a backtracking engine (thirty ``a`` froze the
  old daemon for 128 s), linear for RE2; matched in worker threads;
- ``heavy``: a Go-valid pattern with a large RE2 program (one match on a
  4 KiB value takes ~100 ms; the whole list would take many minutes, as in
  containerd); the client gives up after ``--heavy-seconds``, which also
  shows that the daemon stops within one slice.

A ``ctr version`` run (the real binary) is timed at the end of each phase too.
Prints, per phase: list time, matched objects, Version calls made, and
Version latency p50 / p99 / max in milliseconds. The target: max delay over
baseline below 50 ms. (The filters match no object: 10,000 4 KiB labels are
more than one 16 MiB List response can carry.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from google.protobuf import empty_pb2

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from api import namespaces
from api.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc
from api.containerd.services.version.v1 import version_pb2_grpc
from tests.support import short_tmpdir
from tests.support.berthd import Berthd, embedded_toml

NS = "bench"
VALUE = "a" * 4094 + "!"  # key "a" + value = 4096 bytes, containerd's label limit
HEAVY = "(?:[a-q][^u-z]{999}x|b{999}c|.{999}d)"


def create_leases(address: str, n: int) -> None:
    md = namespaces.outgoing(NS)
    with grpc.insecure_channel(f"unix://{address}") as ch:
        stub = leases_pb2_grpc.LeasesStub(ch)
        batch = 64
        for first in range(0, n, batch):
            futures = [
                stub.Create.future(
                    leases_pb2.CreateRequest(id=f"lease-{i:05d}", labels={"a": VALUE}),
                    metadata=md,
                )
                for i in range(first, min(first + batch, n))
            ]
            for f in futures:
                f.result()


def version_latencies(address: str, stop: threading.Event, out: list[float]) -> None:
    with grpc.insecure_channel(f"unix://{address}") as ch:
        stub = version_pb2_grpc.VersionStub(ch)
        stub.Version(empty_pb2.Empty())
        while not stop.is_set():
            start = time.perf_counter()
            stub.Version(empty_pb2.Empty())
            out.append(time.perf_counter() - start)
            time.sleep(0.002)


def ctr_version(address: str) -> float:
    start = time.perf_counter()
    subprocess.run(["ctr", "--address", address, "version"], check=True, capture_output=True)
    return time.perf_counter() - start


def phase(address: str, flt: str | None, timeout: float | None) -> dict[str, float | str]:
    stop = threading.Event()
    lat: list[float] = []
    md = namespaces.outgoing(NS)
    with ThreadPoolExecutor(1) as pool:
        prober = pool.submit(version_latencies, address, stop, lat)
        try:
            time.sleep(0.3)
            start = time.perf_counter()
            matched: int | str = "-"
            if flt is None:
                time.sleep(3)
                ctr_s = ctr_version(address)
            else:
                with grpc.insecure_channel(f"unix://{address}") as ch:
                    stub = leases_pb2_grpc.LeasesStub(ch)
                    call = stub.List.future(leases_pb2.ListRequest(filters=[flt]), metadata=md)
                    time.sleep(0.2)
                    ctr_s = ctr_version(address)  # while the list runs
                    try:
                        matched = len(call.result(timeout=timeout).leases)
                    except grpc.FutureTimeoutError:
                        call.cancel()
                        matched = "cancelled"
            elapsed = time.perf_counter() - start
            time.sleep(0.3)
        finally:
            stop.set()
        prober.result()
    lat_ms = sorted(x * 1000 for x in lat)
    return {
        "list s": elapsed,
        "matched": matched,
        "calls": len(lat_ms),
        "p50 ms": statistics.median(lat_ms),
        "p99 ms": lat_ms[min(len(lat_ms) - 1, int(len(lat_ms) * 0.99))],
        "max ms": lat_ms[-1],
        "ctr version ms": ctr_s * 1000,
    }


def after_cancel(address: str) -> float:
    """Version latency right after a cancelled heavy list: the daemon must be idle again."""
    time.sleep(0.5)
    with grpc.insecure_channel(f"unix://{address}") as ch:
        stub = version_pb2_grpc.VersionStub(ch)
        lat = []
        for _ in range(50):
            start = time.perf_counter()
            stub.Version(empty_pb2.Empty())
            lat.append(time.perf_counter() - start)
    return max(lat) * 1000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--objects", type=int, default=10_000)
    p.add_argument("--heavy-seconds", type=float, default=10.0)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench_filters: the embedded daemon needs root", file=sys.stderr)
        return 2
    phases = {
        "baseline": None,
        "plain labels.a==x": 'labels."a"==x',
        "regexp (a+)+$": 'labels."a"~="(a+)+$"',
        "regexp ^a+$ (matches none)": 'labels."a"~="^a+$"',
        "heavy regexp (cancelled)": f'labels."a"~=/{HEAVY}/',
    }
    results: dict[str, dict[str, float | str]] = {}
    with short_tmpdir("bnf") as d, Berthd(d / "b", embedded_toml(d / "b")) as b:
        start = time.perf_counter()
        create_leases(b.address, args.objects)
        print(
            f"created {args.objects} leases with 4 KiB labels in "
            f"{time.perf_counter() - start:.1f} s"
        )
        for name, flt in phases.items():
            timeout = args.heavy_seconds if name.startswith("heavy") else 600.0
            results[name] = phase(b.address, flt, timeout)
        idle_max = after_cancel(b.address)

    cols = ["list s", "matched", "calls", "p50 ms", "p99 ms", "max ms", "ctr version ms"]
    print(f"{'':30}" + "".join(f"{c:>15}" for c in cols))
    for name, row in results.items():
        cells = [
            f"{row[c]:15.1f}" if isinstance(row[c], float) else f"{row[c]!s:>15}" for c in cols
        ]
        print(f"{name:30}" + "".join(cells))
    base = results["baseline"]["max ms"]
    assert isinstance(base, float)
    worst = max(float(r["max ms"]) for r in results.values())
    print(f"worst Version delay over baseline max: {worst - base:.1f} ms (target < 50 ms)")
    print(f"max Version latency after the heavy list was cancelled: {idle_max:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
