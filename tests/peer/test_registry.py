"""The registry scaffolding itself: a real registry on loopback counts the blobs
it sends, for an image pushed and pulled with the real ``ctr``."""

from __future__ import annotations

import pytest

from tests.support import free_port, need_binary, need_root, short_tmpdir
from tests.support.berthd import Berthd, embedded_toml, need_embedded_plugins
from tests.support.oci import blob_digests, build_image_tar, random_layers
from tests.support.registry import Registry, need_registry

pytestmark = [pytest.mark.root, pytest.mark.containerd, pytest.mark.runc, pytest.mark.overlay]

IMAGE = "docker.io/library/berth-small:1"


def test_a_pull_gets_each_blob_once_from_the_registry() -> None:
    need_root()
    need_registry()
    need_binary("ctr", "runc", "containerd-shim-runc-v2")
    need_embedded_plugins()
    with short_tmpdir("brg") as d, Registry(d / "registry") as reg:
        remote = f"{reg.host}/berth/small:1"
        tar = build_image_tar(
            d / "img.tar", IMAGE, layers=random_layers(2, 1 << 20), compression="none"
        )
        blobs = blob_digests(tar)
        with Berthd(d / "x", embedded_toml(d / "x", f"127.0.0.1:{free_port()}")) as x:
            x.ctr("images", "import", "--no-unpack", str(tar), namespace="seed")
            x.ctr("images", "push", "--plain-http", remote, IMAGE, namespace="seed")
        assert reg.blob_gets() == []  # a push sends, it does not fetch
        with Berthd(d / "y", embedded_toml(d / "y", f"127.0.0.1:{free_port()}")) as y:
            y.ctr("images", "pull", "--plain-http", remote)
            assert y.ctr("run", "--rm", remote, "t-true", "true").returncode == 0
        gets = reg.gets_by_digest()
        # The manifest comes through /manifests/; the config and every layer
        # through /blobs/, once each, with all their bytes.
        assert len(gets) == len(blobs) - 1
        assert set(gets) < set(blobs)
        assert set(gets.values()) == {1}
        assert {g.digest: g.size for g in reg.blob_gets()} == {d: blobs[d] for d in gets}
