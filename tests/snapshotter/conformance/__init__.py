"""The snapshotter conformance suite: containerd's testsuite scenarios, black box.

The scenarios of containerd v1.6 ``snapshots/testsuite`` (behaviour, not
code) plus the misuse errors, labels, usage and List batching, written
against the ``Snapshotter`` contract.  They reach a snapshotter only through
what a ``Target`` opens — in practice a ``ProxySnapshotter`` over gRPC — so the
same scenarios run against our plugin, real containerd's built-in
snapshotters, and later the daemon's federated service.

A target is described once::

    target = Target(
        name="containerd-overlayfs",
        open=lambda ns: grpc_snapshotter(address, "overlayfs", namespace=ns),
        cleanup=False,            # Cleanup answers NotImplemented there
    )

and a test module runs every scenario against it::

    @pytest.mark.parametrize("scenario", conformance.SCENARIOS)
    async def test_conformance(scenario, target, tmp_path):
        await conformance.run(scenario, target, tmp_path)

Each run gets a fresh namespace (isolating it on namespaced services) and a
unique key prefix and ``containerd.io/gc.root`` label value (isolating it on a
shared plain snapshotter, and keeping containerd's GC away).  As root, the
scenarios mount the returned mounts with mount(8) and read and write through
them; without root, those that need mounts skip.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from services.harness.server import CHANNEL_OPTIONS
from services.snapshotter.proxy import ProxySnapshotter
from services.snapshotter.snapshotter import Info, Mount, Snapshotter
from tests.snapshotter import fstree, mounting

GC_ROOT = "containerd.io/gc.root"

# Known deviations of real containerd that the scenarios tolerate when a
# target declares them; our implementations declare none.
QUIRKS = {
    # containerd 1.6's native snapshotter measures a view's (absent) directory
    # before refusing to commit it, so committing a view that has a parent
    # fails with Unknown "lstat ...: no such file or directory" instead of
    # FailedPrecondition (snapshots/native/native.go Commit).
    "native-commit-view-unknown",
    # containerd 1.6 hands bolt's "bucket name required" to gRPC unconverted
    # for an empty key (Prepare, View) or name (Commit): Unknown, where we
    # answer InvalidArgument (metadata/snapshot.go createSnapshot, Commit).
    "empty-key-unknown",
}

Opener = Callable[[str], AbstractAsyncContextManager[Snapshotter]]


@dataclass(frozen=True)
class Target:
    """A snapshotter under test.

    ``open(namespace)`` yields a Snapshotter speaking for that namespace (a
    target without namespaces ignores it).  ``cleanup`` tells whether Cleanup
    is implemented (else it must answer NotImplemented).  ``quirks`` names
    known deviations of a reference implementation that a scenario tolerates
    (see QUIRKS).
    """

    name: str
    open: Opener
    cleanup: bool = True
    can_mount: bool = field(default_factory=lambda: os.geteuid() == 0)
    quirks: frozenset[str] = frozenset()


@asynccontextmanager
async def grpc_snapshotter(
    address: str, name: str, *, namespace: str | None = None
) -> AsyncIterator[Snapshotter]:
    """A ProxySnapshotter on a fresh channel to the unix socket ``address``."""
    async with grpc.aio.insecure_channel("unix://" + address, options=CHANNEL_OPTIONS) as ch:
        yield ProxySnapshotter(ch, name, namespace=namespace, timeout=60)


_counter = itertools.count()


@dataclass
class Env:
    """What a scenario works with."""

    sn: Snapshotter
    work: Path
    target: Target
    prefix: str
    root_label: str
    _mounted: list[Path] = field(default_factory=list)

    @property
    def opt(self) -> dict[str, str]:
        """The labels every snapshot of the scenario gets (keeps containerd's GC away)."""
        return {GC_ROOT: self.root_label}

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def need_mounts(self) -> None:
        if not self.target.can_mount:
            pytest.skip("mounting snapshots needs root")

    def dir(self, name: str) -> Path:
        path = self.work / name.replace("/", "_")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def mount(self, mounts: list[Mount], name: str) -> Path:
        """Mount ``mounts`` on a fresh directory ``name`` of the work area."""
        assert mounts, "expected mounts to have entries"
        where = self.dir(name)
        mounting.mount_all(mounts, where)
        self._mounted.append(where)
        return where

    def unmount(self, where: Path) -> None:
        mounting.unmount(where)
        if where in self._mounted:
            self._mounted.remove(where)

    def unmount_all(self) -> None:
        for where in reversed(self._mounted):
            with contextlib.suppress(OSError):
                mounting.unmount(where)
        self._mounted.clear()

    async def names(self, *filters: str) -> list[str]:
        return sorted([info.name async for info in self.sn.walk(*filters)])

    async def infos(self, *filters: str) -> dict[str, Info]:
        return {info.name: info async for info in self.sn.walk(*filters)}

    # -- containerd testsuite helpers (helpers.go) -------------------------

    async def apply_to(self, mounts: list[Mount], applier: fstree.Applier) -> None:
        where = self.mount(mounts, f"apply-{next(_counter)}")
        try:
            applier(where)
        finally:
            self.unmount(where)

    async def create_snapshot(self, parent: str, applier: fstree.Applier) -> str:
        name = self.key(f"layer-{next(_counter)}")
        prepare = name + "-prepare"
        mounts = await self.sn.prepare(prepare, parent, self.opt)
        await self.apply_to(mounts, applier)
        await self.sn.commit(name, prepare, self.opt)
        return name

    async def check_snapshot(self, name: str, expected: Path) -> None:
        view = name + "-view"
        mounts = await self.sn.view(view, name, self.opt)
        where = self.mount(mounts, f"check-{next(_counter)}")
        try:
            fstree.assert_same_tree(expected, where)
        finally:
            self.unmount(where)
            await self.sn.remove(view)

    async def check_snapshots(self, *appliers: fstree.Applier) -> None:
        """Build a chain from ``appliers``; check each layer's view against a flat copy."""
        self.need_mounts()
        flat = self.dir(f"flat-{next(_counter)}")
        parent = ""
        for applier in appliers:
            name = await self.create_snapshot(parent, applier)
            applier(flat)
            await self.check_snapshot(name, flat)
            parent = name


Scenario = Callable[[Env], Awaitable[None]]

SCENARIOS: dict[str, Scenario] = {}


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS[fn.__name__] = fn
    return fn


async def run(name: str, target: Target, work: Path) -> None:
    """Run scenario ``name`` against ``target`` using the scratch directory ``work``."""
    token = uuid.uuid4().hex[:12]
    namespace = f"conformance-{token}"
    async with target.open(namespace) as sn:
        env = Env(
            sn=sn,
            work=work,
            target=target,
            prefix=f"{name}-{token}",
            root_label=f"conformance-{token}",
        )
        try:
            await SCENARIOS[name](env)
        finally:
            env.unmount_all()


# Register the scenarios.
from tests.snapshotter.conformance import errors, layers, lifecycle  # noqa: E402

__all__ = ["SCENARIOS", "Env", "Target", "errors", "grpc_snapshotter", "layers", "lifecycle", "run"]
