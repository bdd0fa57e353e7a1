"""Real containerd with its own content store disabled, using our plugin.

containerd is configured with ``disabled_plugins =
["io.containerd.content.v1.content"]`` and our process as ``[proxy_plugins.berth]
type = "content"``; the real ``ctr`` then drives it.  Every blob it handles
goes through our Content service and lands in our plugin's root.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.content.plugin import ContentPlugin, running_plugin
from tests.support import short_tmpdir
from tests.support.containerd import Containerd, need_containerd, need_runc
from tests.support.oci import build_image_tar

pytestmark = [pytest.mark.containerd, pytest.mark.root]

IMAGE = "docker.io/library/berth-content-e2e:latest"

# `ctr content ingest` takes no lease, so containerd's collector may drop the
# blob's record at its first run, 100 ms after start-up.  Without that first
# run the collector only runs after deletions (or 100 mutations), which is
# what the test wants to observe after `ctr content rm`.
NO_STARTUP_GC = """
[plugins."io.containerd.gc.v1.scheduler"]
  startup_delay = "0s"
"""


class Stack:
    def __init__(self, plugin: ContentPlugin, containerd: Containerd, workdir: Path) -> None:
        self.plugin = plugin
        self.containerd = containerd
        self.workdir = workdir

    def blob_path(self, digest: str) -> Path:
        alg, hexd = digest.split(":", 1)
        return self.plugin.root / "blobs" / alg / hexd


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    need_containerd()
    with short_tmpdir("bce") as d, running_plugin(d / "p") as plugin:
        cd = Containerd(
            d / "c",
            disabled_plugins=["io.containerd.content.v1.content"],
            proxy_plugins={"berth": {"type": "content", "address": plugin.address}},
            extra_toml=NO_STARTUP_GC,
        )
        with cd:
            yield Stack(plugin, cd, d)


def ctr_bytes(cd: Containerd, *args: str) -> bytes:
    """``ctr`` output as bytes (``Containerd.ctr`` decodes text)."""
    argv = ["ctr", "--address", cd.address, "--namespace", "default", *args]
    proc = subprocess.run(argv, capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, f"{argv}: {proc.stderr.decode(errors='replace')}"
    return proc.stdout


def wait_until(predicate: object, timeout: float = 20.0) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def test_containerd_uses_our_content_plugin(stack: Stack) -> None:
    out = stack.containerd.ctr("plugins", "ls").stdout
    lines = [line.split() for line in out.splitlines()]
    content = [cols for cols in lines if cols and cols[0] == "io.containerd.content.v1"]
    assert content == [["io.containerd.content.v1", "berth", "-", "ok"]], out
    # containerd's own store never came up
    assert not (stack.containerd.root / "io.containerd.content.v1.content" / "blobs").exists()


def test_ctr_content_commands(stack: Stack) -> None:
    cd = stack.containerd
    data = os.urandom(3 * (1 << 20) + 321)
    dgst = "sha256:" + hashlib.sha256(data).hexdigest()

    cd.ctr(
        "content",
        "ingest",
        "--expected-size",
        str(len(data)),
        "--expected-digest",
        dgst,
        "e2e-ingest",
        input=data,
    )
    # the bytes are in our store, complete and read-only
    assert stack.blob_path(dgst).read_bytes() == data
    assert stack.blob_path(dgst).stat().st_mode & 0o222 == 0

    assert ctr_bytes(cd, "content", "get", dgst) == data

    listing = cd.ctr("content", "ls").stdout
    assert dgst in listing

    labelled = cd.ctr("content", "label", dgst, "berth.test/e2e=yes").stdout
    assert "berth.test/e2e=yes" in labelled
    row = [line for line in cd.ctr("content", "ls").stdout.splitlines() if dgst in line]
    assert len(row) == 1 and "berth.test/e2e=yes" in row[0]

    cd.ctr("content", "rm", dgst)
    assert dgst not in cd.ctr("content", "ls").stdout
    gone = cd.ctr("content", "get", dgst, check=False)
    assert gone.returncode != 0
    # containerd's garbage collector then deletes it from our store
    assert wait_until(lambda: not stack.blob_path(dgst).exists()), "blob not collected"


def test_image_import_and_run(stack: Stack) -> None:
    cd = stack.containerd
    tar = build_image_tar(stack.workdir / "image.tar", name=IMAGE)
    cd.ctr("images", "import", str(tar), timeout=300)
    images = cd.ctr("images", "ls").stdout
    assert IMAGE in images
    # every blob of the image is in our store
    manifest_digest = next(
        col
        for line in images.splitlines()
        if IMAGE in line
        for col in line.split()
        if col.startswith("sha256:")
    )
    assert stack.blob_path(manifest_digest).exists()
    checked = cd.ctr("images", "check").stdout
    assert "complete" in checked

    need_runc()
    result = cd.ctr("run", "--rm", IMAGE, "berth-content-e2e", "echo", "hi", timeout=120)
    assert result.stdout.strip() == "hi"
