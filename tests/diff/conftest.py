"""Fixtures for the diff suites: a real containerd, our plugin pointed at it, clients."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from api import errdefs
from api.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc
from services.diff.content import LEASE_HEADER, ContentAdapter, ContentConnection
from services.diff.differ import Descriptor, Mount
from services.diff.proxy import ProxyDiffer
from services.harness.server import CHANNEL_OPTIONS
from tests.diff import layers
from tests.support import PYTHON, Proc, free_port, short_tmpdir, wait_for_socket
from tests.support.containerd import Containerd, need_containerd

NAMESPACE = "berth-diff-test"


@dataclass
class PluginProc:
    address: str
    metrics: str
    root: Path
    proc: Proc


@pytest.fixture(scope="session")
def containerd() -> Iterator[Containerd]:
    need_containerd()
    with short_tmpdir("bdc") as d, Containerd(d / "cd") as cd:
        yield cd


@pytest.fixture(scope="session")
def plugin(containerd: Containerd) -> Iterator[PluginProc]:
    with short_tmpdir("bdp") as d:
        address = str(d / "diff.sock")
        metrics = f"127.0.0.1:{free_port()}"
        proc = Proc(
            [
                PYTHON,
                "-m",
                "services.diff.main",
                "--address",
                address,
                "--content-address",
                containerd.address,
                "--root",
                str(d / "root"),
                # The tests bind and overlay-mount temp dirs of their own;
                # tests/diff/test_allowed.py checks the guard on narrow roots.
                "--allowed-root",
                tempfile.gettempdir(),
                "--metrics-address",
                metrics,
                "--log-level",
                "debug",
            ],
            d / "plugin.log",
        )
        try:
            wait_for_socket(address, proc=proc.popen)
            yield PluginProc(address, metrics, d / "root", proc)
        finally:
            code = proc.stop()
            log = proc.output()
            assert code == 0, f"berthd-diff exited {code}:\n{log[-4000:]}"


@dataclass
class Env:
    """Clients of one test: content in containerd, our differ, containerd's differ."""

    content: ContentAdapter
    ours: ProxyDiffer
    theirs: ProxyDiffer
    metadata: tuple[tuple[str, str], ...]
    containerd: Containerd
    lease: str
    channel: grpc.aio.Channel  # to containerd

    async def put(self, blob: bytes, media_type: str) -> Descriptor:
        digest = layers.digest(blob)
        try:
            writer = await self.content.writer(f"test-{uuid.uuid4().hex}", len(blob), digest)
        except errdefs.AlreadyExists:
            return Descriptor(media_type, digest, len(blob))
        try:
            # containerd may start the ingest with the blob's bytes already
            # (a copy of a blob it still holds): resume from its offset.
            if writer.offset < len(blob):
                await writer.write(blob[writer.offset :])
            await writer.commit(len(blob), digest)
        except Exception:
            await writer.close()
            raise
        return Descriptor(media_type, digest, len(blob))

    async def put_layer(self, tar: bytes, compression: str = "gzip") -> Descriptor:
        return await self.put(layers.compress(tar, compression), layers.MEDIA_TYPES[compression])


def bind(path: str | Path) -> list[Mount]:
    return [Mount("bind", str(path), ("rbind", "rw"))]


@pytest.fixture
async def env(containerd: Containerd, plugin: PluginProc) -> AsyncIterator[Env]:
    lease = f"diff-test-{uuid.uuid4().hex[:12]}"
    ns_md = (("containerd-namespace", NAMESPACE),)
    cd_channel = grpc.aio.insecure_channel("unix://" + containerd.address, options=CHANNEL_OPTIONS)
    ours_channel = grpc.aio.insecure_channel("unix://" + plugin.address, options=CHANNEL_OPTIONS)
    leases = leases_pb2_grpc.LeasesStub(cd_channel)
    await leases.Create(leases_pb2.CreateRequest(id=lease), metadata=ns_md)
    metadata = (*ns_md, (LEASE_HEADER, lease))
    connection = ContentConnection(containerd.address)
    try:
        yield Env(
            content=connection.for_request(metadata),
            ours=ProxyDiffer(ours_channel, metadata=metadata, name="berthd-diff"),
            theirs=ProxyDiffer(cd_channel, metadata=metadata, name="containerd diff"),
            metadata=metadata,
            containerd=containerd,
            lease=lease,
            channel=cd_channel,
        )
    finally:
        await leases.Delete(leases_pb2.DeleteRequest(id=lease), metadata=ns_md)
        await connection.close()
        await ours_channel.close()
        await cd_channel.close()


@pytest.fixture
def workdir() -> Iterator[Path]:
    with short_tmpdir("bdw") as d:
        os.chmod(d, 0o755)
        yield d
