"""A real shim environment per test: temp dirs, a rootfs, an event intake, managers."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.tasks import CreateOpts, ShimManager
from services.tasks.types import IO
from tests.support import short_tmpdir
from tests.tasks.support import (
    EventIntake,
    RecordingPublisher,
    eventually,
    force_cleanup,
    make_rootfs,
    mounts_under,
    need_real_shim,
    oci_spec,
    rootfs_mounts,
    shim_pids,
)


@dataclass
class ShimEnv:
    tmp: Path
    namespace: str
    rootfs: Path
    intake: EventIntake
    publisher: RecordingPublisher = field(default_factory=RecordingPublisher)
    managers: list[ShimManager] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)

    @property
    def grpc_address(self) -> str:
        return str(self.tmp / "grpc.sock")

    @property
    def ttrpc_address(self) -> str:
        return str(self.tmp / "ttrpc.sock")

    @property
    def state(self) -> str:
        return str(self.tmp / "state")

    @property
    def root(self) -> str:
        return str(self.tmp / "root")

    def manager(self) -> ShimManager:
        m = ShimManager(
            self.root,
            self.state,
            self.grpc_address,
            self.ttrpc_address,
            publish_binary=sys.executable,
            publisher=self.publisher,
        )
        self.managers.append(m)
        return m

    def opts(self, id: str, *args: str, io: IO | None = None) -> CreateOpts:
        self.ids.add(id)
        return CreateOpts(
            spec=oci_spec(self.namespace, id, args),
            rootfs=rootfs_mounts(self.rootfs),
            io=io or IO(),
        )

    async def assert_no_leftovers(self, id: str) -> None:
        """No shim, mount or bundle of ``id`` is left (the shim exits on its
        own time once Shutdown has answered: waited for)."""
        await eventually(lambda: shim_pids(self.grpc_address) == [], "the shim exits")
        assert mounts_under(self.state) == []
        assert not os.path.exists(os.path.join(self.state, self.namespace, id))
        assert not os.path.exists(os.path.join(self.root, self.namespace, id))

    def io(self, name: str) -> tuple[IO, Path]:
        """stdout and stderr to files (the runc shim's ``file://`` scheme); stdout's path."""
        d = self.tmp / "io"
        d.mkdir(exist_ok=True)
        out, err = d / f"{name}.out", d / f"{name}.err"
        return IO(stdout=f"file://{out}", stderr=f"file://{err}"), out


@pytest.fixture
async def shim_env() -> AsyncIterator[ShimEnv]:
    need_real_shim()
    with short_tmpdir("brt") as tmp:
        os.chmod(tmp, 0o711)
        env = ShimEnv(
            tmp=tmp,
            namespace=f"berth-test-{uuid.uuid4().hex[:8]}",
            rootfs=make_rootfs(tmp / "image"),
            intake=EventIntake(),
        )
        await env.intake.server.serve_unix(env.ttrpc_address)
        try:
            yield env
        finally:
            for m in env.managers:
                await m.close()
            await env.intake.server.close()
            force_cleanup(tmp, env.grpc_address, env.namespace, sorted(env.ids))
