"""berthd-diff as a process: request validation, errors, leases, metrics, start-up."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api import errdefs
from api.containerd.services.diff.v1 import diff_pb2, diff_pb2_grpc
from api.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc
from api.containerd.types import descriptor_pb2, mount_pb2
from api.grpc.health.v1 import health_pb2, health_pb2_grpc
from services.diff import mediatypes
from services.diff.differ import Mount
from services.diff.mounts import Mounter, mountpoints
from services.diff.servicer import SERVICE_NAME
from tests.diff import layers as L
from tests.diff.conftest import NAMESPACE, Env, PluginProc, bind
from tests.support import PYTHON, Proc, short_tmpdir, wait_for_socket
from tests.support.containerd import Containerd

pytestmark = [pytest.mark.root, pytest.mark.containerd]


def scrape(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/v1/metrics", timeout=10) as r:
        return str(r.read().decode())


def sample(page: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(page):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


async def raw_apply(
    plugin: PluginProc, request: diff_pb2.ApplyRequest, metadata: tuple[tuple[str, str], ...]
) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel("unix://" + plugin.address) as ch:
        try:
            await diff_pb2_grpc.DiffStub(ch).Apply(request, metadata=metadata, timeout=30)
        except grpc.aio.AioRpcError as e:
            return e.code()
    return grpc.StatusCode.OK


async def test_request_validation(plugin: PluginProc, workdir: Path) -> None:
    ns = (("containerd-namespace", NAMESPACE),)
    mounts = [mount_pb2.Mount(type="bind", source=str(workdir), options=["rbind"])]
    good = descriptor_pb2.Descriptor(
        media_type=mediatypes.LAYER_GZIP, digest=L.digest(b"x"), size=1
    )
    cases = [
        (diff_pb2.ApplyRequest(diff=good, mounts=mounts), (), grpc.StatusCode.FAILED_PRECONDITION),
        (diff_pb2.ApplyRequest(mounts=mounts), ns, grpc.StatusCode.INVALID_ARGUMENT),
        (
            diff_pb2.ApplyRequest(
                diff=descriptor_pb2.Descriptor(media_type=mediatypes.LAYER, digest="nodigest"),
                mounts=mounts,
            ),
            ns,
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (diff_pb2.ApplyRequest(diff=good), ns, grpc.StatusCode.INVALID_ARGUMENT),
        (
            diff_pb2.ApplyRequest(
                diff=descriptor_pb2.Descriptor(media_type="text/plain", digest=L.digest(b"x")),
                mounts=mounts,
            ),
            ns,
            grpc.StatusCode.UNIMPLEMENTED,
        ),
        (diff_pb2.ApplyRequest(diff=good, mounts=mounts), ns, grpc.StatusCode.NOT_FOUND),
    ]
    for request, metadata, code in cases:
        assert await raw_apply(plugin, request, metadata) == code, request


async def test_mount_failures_are_reported_and_cleaned_up(
    env: Env, plugin: PluginProc, workdir: Path
) -> None:
    desc = await env.put_layer(L.layer([L.file("f", b"f")]), "gzip")
    with pytest.raises(errdefs.InvalidArgument, match="No such file or directory"):
        await env.ours.apply(desc, bind(workdir / "does-not-exist"))
    bogus = Mount("overlay", "overlay", (f"lowerdir={workdir}", "no-such-option=1"))
    with pytest.raises(errdefs.Unknown, match="failed to mount"):
        await env.ours.apply(desc, [bogus])
    with pytest.raises(errdefs.InvalidArgument, match="not supported"):
        await env.ours.apply(desc, [Mount("fuse.sshfs", str(workdir), ())])
    image = workdir / "disk.img"
    image.write_bytes(b"")
    with pytest.raises(errdefs.InvalidArgument, match="loop"):
        await env.ours.apply(desc, [Mount("ext4", str(image), ("loop",))])
    assert os.listdir(plugin.root / "tmpmounts") == []


async def test_diff_writes_under_the_callers_lease(env: Env, workdir: Path) -> None:
    lower, upper = workdir / "lower", workdir / "upper"
    lower.mkdir()
    upper.mkdir()
    (upper / "new").write_bytes(os.urandom(1000))
    desc = await env.ours.compare(bind(lower), bind(upper))
    leases = leases_pb2_grpc.LeasesStub(env.channel)
    resp = await leases.ListResources(
        leases_pb2.ListResourcesRequest(id=env.lease), metadata=env.metadata[:1]
    )
    assert (desc.digest, "content") in {(r.id, r.type) for r in resp.resources}


async def test_large_layers_do_not_block_other_calls(
    env: Env, plugin: PluginProc, workdir: Path
) -> None:
    big = L.layer([L.file(f"zeros{i}", bytes(64 << 20)) for i in range(4)])
    desc = await env.put_layer(big, "gzip")
    async with grpc.aio.insecure_channel("unix://" + plugin.address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        task = asyncio.ensure_future(env.ours.apply(desc, bind(workdir)))
        answered_during_apply = 0
        while not task.done():
            resp = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
            if not task.done():
                answered_during_apply += 1
            await asyncio.sleep(0.01)
        applied = await task
    assert applied.size == len(big)
    assert answered_during_apply > 0


async def test_metrics(env: Env, plugin: PluginProc, workdir: Path) -> None:
    before = scrape(plugin.metrics)
    tar = L.layer([L.file("f", os.urandom(4096))])
    desc = await env.put_layer(tar, "zstd")
    await env.ours.apply(desc, bind(workdir))
    await env.ours.compare([], bind(workdir))
    page = scrape(plugin.metrics)
    applied = (
        "berthd_diff_layers_applied_total",
        {"media_type": mediatypes.LAYER_ZSTD, "result": "ok"},
    )
    assert sample(page, applied[0], **applied[1]) == sample(before, applied[0], **applied[1]) + 1
    diffed = (
        "berthd_diff_layers_diffed_total",
        {"media_type": mediatypes.LAYER_GZIP, "result": "ok"},
    )
    assert sample(page, diffed[0], **diffed[1]) == sample(before, diffed[0], **diffed[1]) + 1
    assert sample(page, "berthd_diff_applied_bytes_total") - sample(
        before, "berthd_diff_applied_bytes_total"
    ) == len(tar)
    assert (
        sample(page, "berthd_diff_apply_duration_seconds_count", media_type=mediatypes.LAYER_ZSTD)
        >= 1
    )
    assert (
        sample(
            page,
            "grpc_server_handled_total",
            grpc_service=SERVICE_NAME,
            grpc_method="Apply",
            grpc_code="OK",
        )
        >= 1
    )
    if shutil.which("promtool"):
        out = await asyncio.to_thread(
            subprocess.run,
            ["promtool", "check", "metrics"],
            input=page.encode(),
            capture_output=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stdout + out.stderr


def test_start_up_unmounts_what_a_crashed_run_left(containerd: Containerd) -> None:
    with short_tmpdir("bds") as d:
        root = d / "root"
        source = d / "source"
        source.mkdir()
        mounter = Mounter(str(root))
        leftover = root / "tmpmounts" / "berthd-mount-crashed"
        leftover.mkdir(parents=True)
        mounter.mount(Mount("bind", str(source), ("rbind",)), str(leftover))
        try:
            assert str(leftover) in mountpoints()
            address = str(d / "diff.sock")
            argv = ["--address", address, "--content-address", containerd.address]
            proc = Proc(
                [PYTHON, "-m", "services.diff.main", *argv, "--root", str(root)],
                d / "plugin.log",
            )
            try:
                wait_for_socket(address, proc=proc.popen)
                assert not leftover.exists() and str(leftover) not in mountpoints()
                assert source.exists()
            finally:
                assert proc.stop() == 0, proc.output()
        finally:
            if str(leftover) in mountpoints():  # the test failed: leave no mount behind
                mounter.unmount_all(str(leftover))
