"""The shared fixtures work against the real containerd they stand in front of."""

from __future__ import annotations

import pytest

from tests.support import short_tmpdir
from tests.support.containerd import Containerd, need_containerd, need_runc
from tests.support.oci import build_image_tar

pytestmark = [pytest.mark.containerd, pytest.mark.root]


def test_test_image_imports_and_runs_on_real_containerd() -> None:
    need_runc()
    with short_tmpdir() as d, Containerd(d / "cd") as cd:
        image = build_image_tar(d / "img.tar", layers=[{"etc/berth": b"layer two\n"}])
        cd.ctr("images", "import", str(image))
        listed = cd.ctr("images", "ls", "-q").stdout.split()
        assert listed == ["docker.io/library/berth-test:latest"]
        out = cd.ctr(
            "run", "--rm", "docker.io/library/berth-test:latest", "fixture-run", "cat", "/etc/berth"
        )
        assert out.stdout == "layer two\n"


def test_zstd_image_imports() -> None:
    need_containerd()
    with short_tmpdir() as d, Containerd(d / "cd") as cd:
        image = build_image_tar(d / "img.tar", name="docker.io/library/z:1", compression="zstd")
        cd.ctr("images", "import", str(image))
        assert "docker.io/library/z:1" in cd.ctr("images", "ls", "-q").stdout
        assert cd.ctr("images", "check").returncode == 0
