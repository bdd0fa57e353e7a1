"""``ctr run`` through a daemon on each loop berthd can run on, whatever
loop the rest of the suite picked.  On uvloop ``ctr run`` used to hang for
good (issue #14: the shim kept the ``start`` command's stdout open)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.support import need_binary, need_root, short_tmpdir
from tests.support.berthd import Berthd, embedded_toml, need_embedded_plugins, wait_until
from tests.support.containerd import ctr
from tests.support.oci import build_image_tar

pytestmark = [pytest.mark.root, pytest.mark.runc, pytest.mark.containerd, pytest.mark.overlay]

IMAGE = "docker.io/library/berth-loop:1"
# ctr's own calls take well under a second; a run that has not returned after
# this long is the hang, and fails instead of stalling the suite.
BOUND = 30.0


@pytest.fixture(params=["uvloop", "asyncio"])
def daemon(request: pytest.FixtureRequest) -> Iterator[tuple[Berthd, str]]:
    need_root()
    need_binary("ctr", "runc", "containerd-shim-runc-v2")
    need_embedded_plugins()
    loop: str = request.param
    with (
        short_tmpdir("bl") as d,
        Berthd(d, embedded_toml(d), env={"BERTHD_EVENT_LOOP": loop}) as b,
    ):
        b.ctr("images", "import", str(build_image_tar(d / "img.tar", IMAGE)))
        yield b, loop


def runs_uvloop(pid: int) -> bool:
    with open(f"/proc/{pid}/maps") as f:
        return "/uvloop/loop." in f.read()


def status(b: Berthd, cid: str) -> str | None:
    for line in b.ctr("task", "ls").stdout.splitlines()[1:]:
        fields = line.split()
        if fields[0] == cid:
            return fields[2]
    return None


def test_ctr_run_on_each_loop(daemon: tuple[Berthd, str]) -> None:
    b, loop = daemon
    assert runs_uvloop(b.pid) == (loop == "uvloop"), f"the daemon is not on {loop}"

    out = ctr(b.address, "run", "--rm", IMAGE, "l-echo", "echo", "hi", timeout=BOUND)
    assert (out.returncode, out.stdout) == (0, "hi\n")

    # Detached: the exit reaches the daemon as an event from the shim.
    ctr(b.address, "run", "-d", IMAGE, "l-d", "sleep", "300", timeout=BOUND)
    try:
        assert status(b, "l-d") == "RUNNING"
        ctr(b.address, "task", "kill", "-s", "KILL", "l-d", timeout=BOUND)
        wait_until(lambda: status(b, "l-d") == "STOPPED", BOUND, "task stopped")
    finally:
        b.ctr("task", "rm", "-f", "l-d", check=False)
        b.ctr("containers", "rm", "l-d", check=False)

    # A terminal (the shim's console socket): ctr needs one of its own.
    need_binary("script")
    cmd = f"ctr --address {b.address} run -t --rm {IMAGE} l-tty sh -c 'tty; echo done'"
    tty = subprocess.run(
        ["script", "-qec", cmd, "/dev/null"],
        capture_output=True,
        timeout=BOUND,
        stdin=subprocess.DEVNULL,
    )
    text = tty.stdout.decode(errors="replace")
    assert tty.returncode == 0, text + tty.stderr.decode(errors="replace")
    assert "/dev/pts/" in text and "done" in text
    assert b.ctr("containers", "ls", "-q").stdout.split() == []
