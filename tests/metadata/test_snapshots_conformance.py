"""The snapshotter conformance suite against the namespaced Snapshots service.

Every scenario runs twice at the same time on one server, each run in its
own namespace, over the native snapshotter in-process behind the metadata
layer (containerd's layering: service -> metadata -> backend).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.metadata.server import MetaServer
from tests.snapshotter import conformance
from tests.snapshotter.conformance import Target, grpc_snapshotter

SLOW = {"layers_128_mount", "list_batches"}


def _scenarios() -> list[object]:
    return [
        pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name
        for name in conformance.SCENARIOS
    ]


@pytest.mark.parametrize("scenario", _scenarios())
async def test_scenario_in_two_namespaces_at_once(
    scenario: str, ms: MetaServer, tmp_path: Path
) -> None:
    address = ms.address
    target = Target(
        name="berthd-metadata-native",
        open=lambda ns: grpc_snapshotter(address, "native", namespace=ns),
        cleanup=True,
    )
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    await asyncio.gather(
        conformance.run(scenario, target, tmp_path / "a"),
        conformance.run(scenario, target, tmp_path / "b"),
    )
