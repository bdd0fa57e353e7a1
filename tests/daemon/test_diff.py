"""Diff through the daemon: an ordered list of differs where NotImplemented falls through."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from api.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from api.containerd.services.diff.v1 import diff_pb2, diff_pb2_grpc
from api.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from api.containerd.types import descriptor_pb2, mount_pb2
from tests.daemon.test_metrics import samples, scrape
from tests.support import (
    PYTHON,
    Proc,
    free_port,
    need_binary,
    need_root,
    short_tmpdir,
    wait_for_socket,
)
from tests.support.berthd import Berthd, embedded_toml, need_plugin
from tests.support.containerd import ctr_bytes

NS = (
    ("containerd-namespace", "default"),
    ("containerd-lease", "l1"),
    ("x-test", "not-forwarded"),
)
DEFAULT_NS = (("containerd-namespace", "default"),)


@pytest.fixture
def workdir() -> Iterator[Path]:
    with short_tmpdir("bd") as d:
        yield d


def fake_differ(d: Path, name: str, mode: str) -> Proc:
    sock = str(d / "p" / f"{name}.sock")
    proc = Proc(
        [
            PYTHON,
            "-m",
            "tests.daemon.fake_differ",
            "--address",
            sock,
            "--name",
            name,
            "--mode",
            mode,
        ],
        d / f"{name}.log",
    )
    wait_for_socket(sock, proc=proc.popen)
    return proc


def differ_config(d: Path, order: list[str] | None, names: list[str]) -> str:
    lines = ["version = 2"]
    if order is not None:
        lines += ['[plugins."io.containerd.service.v1.diff-service"]', f"default = {order!r}"]
    for n in names:
        lines += [f"[proxy_plugins.{n}]", 'type = "diff"', f'address = "{d}/p/{n}.sock"']
    return "\n".join(lines).replace("'", '"') + "\n"


def apply(b: Berthd) -> descriptor_pb2.Descriptor:
    with b.channel() as ch:
        req = diff_pb2.ApplyRequest(diff=descriptor_pb2.Descriptor(digest="sha256:" + "1" * 64))
        return diff_pb2_grpc.DiffStub(ch).Apply(req, metadata=NS, timeout=10).applied


def compare(b: Berthd) -> descriptor_pb2.Descriptor:
    with b.channel() as ch:
        return diff_pb2_grpc.DiffStub(ch).Diff(diff_pb2.DiffRequest(), metadata=NS, timeout=10).diff


def commit_leased(ch: grpc.Channel, ref: str, blob: bytes, digest: str) -> None:
    """Write and commit ``blob`` in one message, held by the lease "keep"."""
    written = content_pb2_grpc.ContentStub(ch).Write(
        iter(
            [
                content_pb2.WriteContentRequest(
                    action=content_pb2.WriteAction.COMMIT,
                    ref=ref,
                    total=len(blob),
                    expected=digest,
                    data=blob,
                )
            ]
        ),
        metadata=(*DEFAULT_NS, ("containerd-lease", "keep")),
    )
    assert [r.digest for r in written][-1] == digest


def test_not_implemented_falls_through_in_order(workdir: Path) -> None:
    d = workdir
    procs = [
        fake_differ(d, "lazy", "unimplemented"),
        fake_differ(d, "one", "echo"),
        fake_differ(d, "two", "echo"),
    ]
    try:
        with Berthd(d, differ_config(d, ["lazy", "two", "one"], ["one", "two", "lazy"])) as b:
            got = apply(b)
            assert got.annotations["served-by"] == "two"
            # the caller's namespace and lease reached the plugin, other headers
            # stay at the daemon (as containerd's diff proxy sends only those)
            assert got.annotations["namespace"] == "default"
            assert got.annotations["lease"] == "l1"
            assert got.annotations["x-test"] == ""
            assert compare(b).annotations["served-by"] == "two"
            detailed = b.ctr("plugins", "ls", "-d", "id==diff-service").stdout
            assert "lazy,two,one" in detailed
        # without a configured order: every differ, in config order
        with Berthd(d / "b", differ_config(d, None, ["lazy", "one", "two"])) as b:
            assert apply(b).annotations["served-by"] == "one"
    finally:
        for p in procs:
            p.stop()


def test_all_differs_not_implemented(workdir: Path) -> None:
    d = workdir
    proc = fake_differ(d, "lazy", "unimplemented")
    try:
        with Berthd(d, differ_config(d, None, ["lazy"])) as b:
            with pytest.raises(grpc.RpcError) as info:
                apply(b)
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert info.value.details() == "lazy does not do this: not implemented"
    finally:
        proc.stop()


def test_unknown_differ_in_order_fails_the_diff_service(workdir: Path) -> None:
    d = workdir
    with Berthd(d, differ_config(d, ["missing"], ["one"])) as b:
        out = b.ctr("plugins", "ls", "-d", "id==diff-service").stdout
        assert "needed differ not loaded: missing" in out
        table = b.ctr("plugins", "ls").stdout
        assert [ln.split()[-1] for ln in table.splitlines() if " diff-service " in ln] == ["error"]
        # the Diff service is then not served at all, as in containerd
        with pytest.raises(grpc.RpcError) as info:
            apply(b)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def layer(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


@pytest.mark.root
@pytest.mark.overlay
@pytest.mark.containerd
def test_real_differ_applies_and_diffs_through_the_daemon(workdir: Path) -> None:
    need_root()
    need_binary("ctr")
    for m in ("services.content.main", "services.snapshotter.main", "services.diff.main"):
        need_plugin(m)
    d = workdir
    with Berthd(d, embedded_toml(d)) as b:
        blob = layer({"hello.txt": b"hello layer\n"})
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        # Held by a lease: unreferenced content is fair game for the GC that
        # runs once the plugins are up.
        b.ctr("leases", "create", "--id", "keep")
        with b.channel() as ch:
            commit_leased(ch, "layer-1", blob, digest)
        b.ctr("snapshots", "prepare", "unpack-1")
        mounts = b.ctr("snapshots", "mounts", "/m", "unpack-1").stdout
        assert "mount" in mounts
        with b.channel() as ch:
            got = snapshots_pb2_grpc.SnapshotsStub(ch).Mounts(
                snapshots_pb2.MountsRequest(snapshotter="overlayfs", key="unpack-1"),
                metadata=DEFAULT_NS,
            )
            req = diff_pb2.ApplyRequest(
                diff=descriptor_pb2.Descriptor(
                    media_type="application/vnd.oci.image.layer.v1.tar+gzip",
                    digest=digest,
                    size=len(blob),
                ),
                mounts=[
                    mount_pb2.Mount(type=m.type, source=m.source, options=m.options)
                    for m in got.mounts
                ],
            )
            applied = diff_pb2_grpc.DiffStub(ch).Apply(req, metadata=DEFAULT_NS, timeout=60).applied
            assert applied.media_type == "application/vnd.oci.image.layer.v1.tar"
            b.ctr("snapshots", "commit", "layer-1-committed", "unpack-1")
            b.ctr("snapshots", "view", "view-1", "layer-1-committed")
            view = snapshots_pb2_grpc.SnapshotsStub(ch).Mounts(
                snapshots_pb2.MountsRequest(snapshotter="overlayfs", key="view-1"),
                metadata=DEFAULT_NS,
            )
            empty = snapshots_pb2_grpc.SnapshotsStub(ch).View(
                snapshots_pb2.ViewSnapshotRequest(snapshotter="overlayfs", key="empty-1"),
                metadata=DEFAULT_NS,
            )
            diffed = (
                diff_pb2_grpc.DiffStub(ch)
                .Diff(
                    diff_pb2.DiffRequest(
                        left=list(empty.mounts),
                        right=list(view.mounts),
                        media_type="application/vnd.oci.image.layer.v1.tar",
                        ref="diff-1",
                    ),
                    metadata=DEFAULT_NS,
                    timeout=60,
                )
                .diff
            )
        produced = ctr_bytes(b.address, "content", "get", diffed.digest)
        with tarfile.open(fileobj=io.BytesIO(produced)) as tar:
            member = tar.extractfile("hello.txt")
            assert member is not None and member.read() == b"hello layer\n"


def _reads(metrics: str) -> tuple[float, float]:
    """Content Read calls answered by the daemon itself, and by the content plugin."""
    daemon = plugin = 0.0
    for labels, value in samples(scrape(metrics))["grpc_server_handled_total"]:
        if labels["grpc_method"] == "Read" and labels["grpc_service"].endswith("Content"):
            if "plugin" not in labels:
                daemon += value
            elif labels["plugin"] == "content":
                plugin += value
    return daemon, plugin


@pytest.mark.root
@pytest.mark.overlay
@pytest.mark.containerd
def test_apply_reads_the_layer_from_the_content_plugin_within_the_namespace(
    workdir: Path,
) -> None:
    """The embedded differ reads a layer's bytes from the content plugin, not
    through the daemon, but only a layer the caller's namespace has."""
    need_root()
    need_binary("ctr")
    for m in ("services.content.main", "services.snapshotter.main", "services.diff.main"):
        need_plugin(m)
    d = workdir
    metrics = f"127.0.0.1:{free_port()}"
    with Berthd(d, embedded_toml(d, metrics)) as b:
        blob = layer({"direct.txt": b"read from the plugin\n"})
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        b.ctr("leases", "create", "--id", "keep")
        with b.channel() as ch:
            commit_leased(ch, "layer-d", blob, digest)
            snaps = snapshots_pb2_grpc.SnapshotsStub(ch)
            differ = diff_pb2_grpc.DiffStub(ch)
            desc = descriptor_pb2.Descriptor(
                media_type="application/vnd.oci.image.layer.v1.tar+gzip",
                digest=digest,
                size=len(blob),
            )

            def apply_in(ns: str, key: str) -> diff_pb2.ApplyResponse:
                md = (("containerd-namespace", ns),)
                mounts = snaps.Prepare(
                    snapshots_pb2.PrepareSnapshotRequest(
                        snapshotter="overlayfs",
                        key=key,
                        labels={"containerd.io/gc.root": "test"},  # kept by the GC
                    ),
                    metadata=md,
                ).mounts
                return differ.Apply(
                    diff_pb2.ApplyRequest(diff=desc, mounts=list(mounts)), metadata=md, timeout=60
                )

            # The plugin holds the bytes, but namespace "other" has no such blob.
            with pytest.raises(grpc.RpcError) as err:
                apply_in("other", "unpack-other")
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert digest in (err.value.details() or "")
            before = _reads(metrics)
            applied = apply_in("default", "unpack-d").applied
            after = _reads(metrics)
        assert applied.media_type == "application/vnd.oci.image.layer.v1.tar"
        assert after[0] == before[0], "the daemon relayed the layer's bytes"
        assert after[1] > before[1], "the content plugin served no Read"
        # A first layer's snapshot is a bind mount of its directory.
        mount = mounts_of(b, "unpack-d")[0]
        assert mount.type == "bind"
        assert (Path(mount.source) / "direct.txt").read_bytes() == b"read from the plugin\n"


def mounts_of(b: Berthd, key: str) -> list[mount_pb2.Mount]:
    with b.channel() as ch:
        return list(
            snapshots_pb2_grpc.SnapshotsStub(ch)
            .Mounts(
                snapshots_pb2.MountsRequest(snapshotter="overlayfs", key=key), metadata=DEFAULT_NS
            )
            .mounts
        )
