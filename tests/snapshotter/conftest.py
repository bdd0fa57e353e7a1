"""Shared, session-wide snapshotters for the conformance suite.

One plugin process per backend and one private containerd serve every
scenario; the scenarios isolate themselves (unique keys, labels, namespaces).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.snapshotter.plugin import Plugin
from tests.support import short_tmpdir
from tests.support.containerd import Containerd, need_containerd


def _plugin(backend: str | tuple[str, ...], **kwargs: Any) -> Iterator[Plugin]:
    with short_tmpdir("bsn") as d, Plugin(d, backend, **kwargs) as plugin:
        yield plugin
        # Scenarios leave their snapshots behind; umount anything still
        # mounted from this root before the tree is removed.
        _umount_below(d)


def _umount_below(d: Path) -> None:
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f if line.split()[1].startswith(str(d))]
    for point in sorted(points, reverse=True):
        os.system(f"umount -l {point} 2>/dev/null")


@pytest.fixture(scope="session")
def berth_overlayfs() -> Iterator[Plugin]:
    yield from _plugin("overlayfs")


@pytest.fixture(scope="session")
def berth_native() -> Iterator[Plugin]:
    yield from _plugin("native")


@pytest.fixture(scope="session")
def berth_multi() -> Iterator[Plugin]:
    """One process serving both backends, each request naming its snapshotter."""
    yield from _plugin(("overlayfs", "native"))


@pytest.fixture(scope="session")
def example_stats() -> Iterator[Plugin]:
    """The SDK example wrapping the overlay backend: a wrapper must stay transparent."""
    yield from _plugin(
        "overlayfs",
        module="services.snapshotter.example_stats",
        extra=("--backend", "overlayfs"),
    )


@pytest.fixture(scope="session")
def reference_containerd() -> Iterator[Containerd]:
    need_containerd()
    with short_tmpdir("bcd") as d, Containerd(d / "cd") as cd:
        yield cd
