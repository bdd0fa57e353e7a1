"""Prepare answering AlreadyExists for ``containerd.io/snapshot.ref``: the remote-snapshotter hook.

Through real containerd: a Prepare labelled with a target the plugin can
provide fails with AlreadyExists, and containerd then knows the target as a
committed snapshot (found by label and parent in the backend), in that
namespace and in any other that asks for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from api import errdefs
from services.snapshotter.native import NativeSnapshotter
from services.snapshotter.remote import ProvidedLayers
from services.snapshotter.snapshotter import LABEL_SNAPSHOT_REF, Kind
from tests.snapshotter import mounting
from tests.snapshotter.conformance import grpc_snapshotter
from tests.snapshotter.plugin import Plugin
from tests.snapshotter.remote_proc import DirectoryLayers
from tests.support import short_tmpdir
from tests.support.containerd import Containerd, need_containerd

GC = {"containerd.io/gc.root": "remote-test"}


def _layers(d: Path) -> Path:
    layer = d / "layers" / "layer-a"
    (layer / "etc").mkdir(parents=True)
    (layer / "etc" / "provided").write_text("from the provider\n")
    return d / "layers"


async def test_provided_layer_in_process(tmp_path: Path) -> None:
    provider = DirectoryLayers(_layers(tmp_path))
    sn = ProvidedLayers(NativeSnapshotter(tmp_path / "root"), provider)
    with pytest.raises(errdefs.AlreadyExists):
        await sn.prepare("extract-1", "", {LABEL_SNAPSHOT_REF: "layer-a"})
    info = await sn.stat("layer-a")
    assert info.kind == Kind.COMMITTED
    assert info.labels[LABEL_SNAPSHOT_REF] == "layer-a"
    with pytest.raises(errdefs.NotFound):
        await sn.stat("extract-1")
    # Already there: answered without asking the provider again.
    with pytest.raises(errdefs.AlreadyExists):
        await sn.prepare("extract-2", "", {LABEL_SNAPSHOT_REF: "layer-a"})
    assert provider.provided == ["layer-a"]
    # Another parent is another layer: declined, unpacked as usual.
    await sn.prepare("base-a")
    await sn.commit("base", "base-a")
    mounts = await sn.prepare("extract-3", "base", {LABEL_SNAPSHOT_REF: "layer-a"})
    assert mounts and (await sn.stat("extract-3")).kind == Kind.ACTIVE
    # Unknown targets are declined too.
    await sn.prepare("extract-4", "", {LABEL_SNAPSHOT_REF: "unknown"})
    view = await sn.view("v", "layer-a")
    assert (Path(view[0].source) / "etc" / "provided").read_text() == "from the provider\n"
    await sn.close()


@pytest.fixture
def remote_plugin() -> Iterator[Plugin]:
    with short_tmpdir("brm") as d:
        layers = _layers(d)
        plugin = Plugin(
            d / "p",
            module="tests.snapshotter.remote_proc",
            extra=("--backend", "overlayfs", "--layers", str(layers)),
        )
        with plugin:
            yield plugin


@pytest.mark.containerd
@pytest.mark.root
@pytest.mark.overlay
async def test_containerd_uses_provided_layer(remote_plugin: Plugin, tmp_path: Path) -> None:
    need_containerd()
    with short_tmpdir("brmc") as d:
        proxy = {"remote": {"type": "snapshot", "address": remote_plugin.address}}
        with Containerd(d / "cd", proxy_plugins=proxy) as cd:
            async with grpc_snapshotter(cd.address, "remote", namespace="ns1") as sn:
                labels = {LABEL_SNAPSHOT_REF: "layer-a", **GC}
                with pytest.raises(errdefs.AlreadyExists) as exc:
                    await sn.prepare("extract-1 layer-a", "", labels)
                assert "layer-a" in str(exc.value)
                info = await sn.stat("layer-a")
                assert info.kind == Kind.COMMITTED
                assert info.labels[LABEL_SNAPSHOT_REF] == "layer-a"
                with pytest.raises(errdefs.NotFound):
                    await sn.stat("extract-1 layer-a")

                where = tmp_path / "view"
                where.mkdir()
                mounting.mount_all(await sn.view("v", "layer-a", GC), where)
                try:
                    assert (where / "etc" / "provided").read_text() == "from the provider\n"
                finally:
                    mounting.unmount(where)

                # A target the plugin cannot provide is prepared as usual.
                mounts = await sn.prepare("extract-2", "", {LABEL_SNAPSHOT_REF: "nope", **GC})
                assert mounts

            # Another namespace asking for the same layer gets it too.
            async with grpc_snapshotter(cd.address, "remote", namespace="ns2") as sn2:
                with pytest.raises(errdefs.AlreadyExists):
                    await sn2.prepare("extract-9", "", {LABEL_SNAPSHOT_REF: "layer-a", **GC})
                assert (await sn2.stat("layer-a")).kind == Kind.COMMITTED
    assert os.path.exists(remote_plugin.address)
