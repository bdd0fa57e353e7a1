"""Running containers: berthd against containerd, with the real ctr, shim and runc.

    sudo .venv/bin/python tests/bench/bench_run.py [--runs 20] [--more 100] [--json out.json]

berthd runs its embedded default (content, overlayfs snapshotter and differ
as supervised plugins); a private containerd 1.6 runs on temp dirs with its
own overlayfs snapshotter.  Both import the same busybox image.  Measured:

- the median (and p90) of ``--runs`` sequential ``ctr run --rm IMAGE ID true``;
- memory of the daemon and its plugin processes (not the shims, which are the
  same binary for both): RSS and PSS summed, idle after start-up and again
  after ``--more`` further runs.

Prints both daemons side by side with the ratio berthd / containerd.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support import short_tmpdir
from tests.support.berthd import Berthd, child_pids, embedded_toml
from tests.support.containerd import Containerd
from tests.support.oci import build_image_tar

IMAGE = "docker.io/library/bench-run:1"

Ctr = Callable[..., subprocess.CompletedProcess[str]]


def memory_kb(pids: list[int]) -> tuple[int, int]:
    """Summed (RSS, PSS) in KiB of ``pids`` (smaps_rollup)."""
    rss = pss = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1])
            elif line.startswith("Pss:"):
                pss += int(line.split()[1])
    return rss, pss


def timed_runs(ctr: Ctr, n: int, tag: str) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        ctr("run", "--rm", IMAGE, f"{tag}-{i}", "true")
        out.append(time.perf_counter() - t)
    return out


def measure(
    name: str,
    ctr: Ctr,
    pids: Callable[[], list[int]],
    runs: int,
    more: int,
) -> dict[str, float]:
    ctr("run", "--rm", IMAGE, f"{name}-warm", "true")
    time.sleep(1.0)
    idle = memory_kb(pids())
    times = timed_runs(ctr, runs, f"{name}-t")
    timed_runs(ctr, more, f"{name}-m")
    time.sleep(1.0)
    after = memory_kb(pids())
    times.sort()
    return {
        "run_median_s": statistics.median(times),
        "run_p90_s": times[int(0.9 * (len(times) - 1))],
        "idle_rss_mb": idle[0] / 1024,
        "idle_pss_mb": idle[1] / 1024,
        "after_rss_mb": after[0] / 1024,
        "after_pss_mb": after[1] / 1024,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--more", type=int, default=100)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    results: dict[str, dict[str, float]] = {}
    with short_tmpdir("bnr") as d:
        tar = build_image_tar(d / "img.tar", IMAGE)
        with Containerd(d / "c") as cd:
            cd.ctr("images", "import", str(tar))
            assert cd.proc is not None
            results["containerd"] = measure(
                "c", cd.ctr, lambda: [cd.proc.pid] if cd.proc else [], args.runs, args.more
            )
        with Berthd(d / "b", embedded_toml(d / "b")) as b:
            b.ctr("images", "import", str(tar))

            def berthd_pids() -> list[int]:
                return [b.pid, *(p for p, cmd in child_pids(b.pid).items() if "berthd-" in cmd)]

            results["berthd"] = measure("b", b.ctr, berthd_pids, args.runs, args.more)
    c, b_ = results["containerd"], results["berthd"]
    print(f"{'':28}{'berthd':>12}{'containerd':>12}{'ratio':>8}")
    for key, label in (
        ("run_median_s", "ctr run --rm true, median s"),
        ("run_p90_s", "ctr run --rm true, p90 s"),
        ("idle_rss_mb", "idle RSS MB"),
        ("idle_pss_mb", "idle PSS MB"),
        ("after_rss_mb", f"RSS after {args.more} runs MB"),
        ("after_pss_mb", f"PSS after {args.more} runs MB"),
    ):
        print(f"{label:28}{b_[key]:12.3f}{c[key]:12.3f}{b_[key] / c[key]:8.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
