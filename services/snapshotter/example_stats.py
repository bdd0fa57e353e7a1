"""An SDK example: a snapshotter that wraps another and keeps per-snapshot statistics.

Every snapshot gets a record — how it was created, how often its mounts were
asked for, how many children were built on it, what it was committed from —
exposed three ways:

- ``StatsSnapshotter.report()`` in-process;
- ``--stats-file PATH``: the report as JSON, rewritten after each change;
- ``/v1/metrics``: ``berthd_example_snapshot_operations_total{operation}``
  (totals only: a snapshot key is never a metric label).

Run it like any plugin::

    python -m services.snapshotter.example_stats --root /var/lib/stats-sn \\
        --address /run/stats-sn.sock --backend overlayfs --stats-file /run/stats-sn.json

It is also the smallest complete use of ``services.snapshotter.sdk``: a
``Forwarding`` subclass overriding what it observes, and ``sdk.run``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from services.snapshotter import sdk
from services.snapshotter.native import NativeSnapshotter
from services.snapshotter.overlay import OverlaySnapshotter
from services.snapshotter.snapshotter import Forwarding, Mount, Snapshotter, Usage

PROG = "berthd-example-stats-snapshotter"


@dataclass(frozen=True)
class SnapshotStats:
    created_by: str = ""  # "prepare", "view" or "commit"
    committed_from: str = ""  # the active key a committed snapshot came from
    mounts: int = 0  # Mounts calls (plus the mounts Prepare/View returned)
    children: int = 0  # snapshots prepared or viewed on top of this one
    usage_queries: int = 0


class StatsSnapshotter(Forwarding):
    """Wraps ``inner``; only successful calls are counted."""

    def __init__(self, inner: Snapshotter, stats_file: Path | None = None) -> None:
        super().__init__(inner)
        self.stats_file = stats_file
        self._stats: dict[str, SnapshotStats] = {}
        self._lock = threading.Lock()
        self._ops: Counter | None = None

    # -- exposure --------------------------------------------------------

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """Called by the SDK with the process's registry."""
        self._ops = Counter(
            "berthd_example_snapshot_operations",
            "Snapshot operations seen by the statistics example, by operation.",
            ("operation",),
            registry=registry,
        )

    def report(self) -> dict[str, SnapshotStats]:
        with self._lock:
            return dict(self._stats)

    def _record(self, operation: str, key: str = "", **increments: int) -> None:
        """Count ``operation``; add ``increments`` to ``key``'s counters."""
        with self._lock:
            if key:
                current = self._stats.get(key, SnapshotStats())
                for name, n in increments.items():
                    current = replace(current, **{name: getattr(current, name) + n})
                self._stats[key] = current
            self._save()
        if self._ops is not None:
            self._ops.labels(operation).inc()

    def _save(self) -> None:
        if self.stats_file is None:
            return
        tmp = self.stats_file.with_name(self.stats_file.name + ".tmp")
        tmp.write_text(json.dumps({k: asdict(v) for k, v in sorted(self._stats.items())}))
        os.replace(tmp, self.stats_file)

    # -- what is observed ------------------------------------------------

    async def prepare(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        mounts = await self.inner.prepare(key, parent, labels)
        self._created("prepare", key, parent)
        return mounts

    async def view(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        mounts = await self.inner.view(key, parent, labels)
        self._created("view", key, parent)
        return mounts

    def _created(self, how: str, key: str, parent: str) -> None:
        with self._lock:
            self._stats[key] = SnapshotStats(created_by=how, mounts=1)
        if parent:
            self._record(how, parent, children=1)
        else:
            self._record(how)

    async def mounts(self, key: str) -> list[Mount]:
        mounts = await self.inner.mounts(key)
        self._record("mounts", key, mounts=1)
        return mounts

    async def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        await self.inner.commit(name, key, labels)
        with self._lock:
            before = self._stats.pop(key, SnapshotStats())
            self._stats[name] = replace(before, created_by="commit", committed_from=key)
        self._record("commit")

    async def usage(self, key: str) -> Usage:
        usage = await self.inner.usage(key)
        self._record("usage", key, usage_queries=1)
        return usage

    async def remove(self, key: str) -> None:
        await self.inner.remove(key)
        with self._lock:
            self._stats.pop(key, None)
        self._record("remove")


def build(args: argparse.Namespace) -> Snapshotter:
    inner: Snapshotter
    if args.backend == "native":
        inner = NativeSnapshotter(args.root)
    else:
        inner = OverlaySnapshotter(args.root)
    return StatsSnapshotter(inner, Path(args.stats_file) if args.stats_file else None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = sdk.argument_parser(PROG, default_address="/run/berthd/example-stats.sock")
    parser.add_argument("--backend", choices=("overlayfs", "native"), default="overlayfs")
    parser.add_argument("--stats-file", default=None, help="write the statistics here as JSON")
    return sdk.run(build, prog=PROG, name="example-stats", parser=parser, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
