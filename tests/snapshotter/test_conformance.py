"""The conformance suite against our plugin and against real containerd.

Every scenario runs against seven targets, black box over gRPC:

- ``berth-overlayfs``, ``berth-native``: our ``berthd-snapshotter`` process;
- ``multi-overlayfs``, ``multi-native``: one ``berthd-snapshotter`` process
  serving both, addressed by name (as the embedded default runs it);
- ``example-stats``: the SDK example (a wrapper) around the overlay backend;
- ``containerd-overlayfs``, ``containerd-native``: the built-in snapshotters
  of a private real containerd (through its metadata layer, in a namespace).

The scenarios passing on containerd is what shows they test the right thing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.snapshotter import conformance
from tests.snapshotter.conformance import Target, grpc_snapshotter

TARGETS = [
    pytest.param("berth-overlayfs", marks=pytest.mark.overlay),
    pytest.param("berth-native"),
    pytest.param("multi-overlayfs", marks=pytest.mark.overlay),
    pytest.param("multi-native"),
    pytest.param("example-stats", marks=pytest.mark.overlay),
    pytest.param("containerd-overlayfs", marks=[pytest.mark.containerd, pytest.mark.overlay]),
    pytest.param("containerd-native", marks=pytest.mark.containerd),
]

SLOW = {"layers_128_mount", "list_batches"}


def _scenarios() -> list[object]:
    return [
        pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name
        for name in conformance.SCENARIOS
    ]


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> Target:
    name: str = request.param
    owner, backend = name.split("-", 1)
    if owner == "multi":
        address = request.getfixturevalue("berth_multi").address
        return Target(
            name=name,
            open=lambda ns: grpc_snapshotter(address, backend, namespace=ns),
            cleanup=True,
        )
    if owner in ("berth", "example"):
        fixture = "example_stats" if owner == "example" else f"berth_{backend}"
        plugin = request.getfixturevalue(fixture)
        address = plugin.address
        return Target(
            name=name,
            open=lambda ns: grpc_snapshotter(address, "berth", namespace=ns),
            cleanup=True,
        )
    cd = request.getfixturevalue("reference_containerd")
    address = cd.address
    return Target(
        name=name,
        open=lambda ns: grpc_snapshotter(address, backend, namespace=ns),
        # containerd's Snapshots service does not expose Cleanup (its GC does it).
        cleanup=False,
        quirks=frozenset(
            {"empty-key-unknown", "native-commit-view-unknown"}
            if backend == "native"
            else {"empty-key-unknown"}
        ),
    )


@pytest.mark.parametrize("scenario", _scenarios())
async def test_conformance(scenario: str, target: Target, tmp_path: Path) -> None:
    await conformance.run(scenario, target, tmp_path)
