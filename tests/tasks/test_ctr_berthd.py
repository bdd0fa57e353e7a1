"""Containers run through berthd with the real ``ctr``, the real
``containerd-shim-runc-v2`` and ``runc``, on berthd's embedded default."""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import os
import re
import signal
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from api.containerd.services.containers.v1 import containers_pb2, containers_pb2_grpc
from api.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from api.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from api.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from api.containerd.types import descriptor_pb2
from daemon.tasks.checkpoint import MEDIA_TYPE_CHECKPOINT as CHECKPOINT_MEDIA_TYPE
from tests.daemon.test_task_metrics import INHERITED_LINT, promtool_findings
from tests.support import free_port, need_binary, need_root, short_tmpdir
from tests.support.berthd import (
    Berthd,
    CtrEvents,
    embedded_toml,
    need_embedded_plugins,
    wait_until,
)
from tests.support.oci import build_image_tar

pytestmark = [pytest.mark.root, pytest.mark.runc, pytest.mark.containerd, pytest.mark.overlay]

IMAGE = "docker.io/library/berth-run:1"
NS = (("containerd-namespace", "default"),)


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()[1:]]


def task_status(b: Berthd, cid: str) -> str | None:
    for r in rows(b.ctr("task", "ls").stdout):
        if r[0] == cid:
            return r[2]
    return None


def shims_of(workdir: Path) -> list[int]:
    """Live shim processes whose bundle lies under ``workdir``."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if b"containerd-shim-runc" in cmd and cwd.startswith(str(workdir)):
            out.append(int(entry.name))
    return out


def mounts_under(workdir: Path) -> list[str]:
    with open("/proc/mounts") as f:
        return [line.split()[1] for line in f if f" {workdir}/" in f" {line.split()[1]}"]


@pytest.fixture(scope="module")
def berthd() -> Iterator[tuple[Berthd, str]]:
    need_root()
    need_binary("ctr", "runc", "containerd-shim-runc-v2")
    need_embedded_plugins()
    metrics = f"127.0.0.1:{free_port()}"
    with short_tmpdir("bk") as d, Berthd(d, embedded_toml(d, metrics)) as b:
        tar = build_image_tar(d / "img.tar", IMAGE)
        b.ctr("images", "import", str(tar))
        yield b, metrics


@pytest.fixture
def restartable() -> Iterator[Berthd]:
    """A daemon of the test's own (it is stopped, killed and started again),
    with the image imported; whatever the test left running is removed."""
    need_root()
    need_binary("ctr", "runc", "containerd-shim-runc-v2")
    need_embedded_plugins()
    with short_tmpdir("bk") as d:
        b = Berthd(d, embedded_toml(d))
        try:
            b.start()
            b.ctr("images", "import", str(build_image_tar(d / "img.tar", IMAGE)))
            yield b
        finally:
            if b.proc is not None:
                for task in b.ctr("task", "ls", "-q", check=False).stdout.split():
                    b.ctr("task", "rm", "-f", task, check=False)
            b.__exit__(None, None, None)


def test_run_rm_prints_and_exit_codes(berthd: tuple[Berthd, str]) -> None:
    b, _ = berthd
    out = b.ctr("run", "--rm", IMAGE, "t-echo", "echo", "hi")
    assert out.stdout == "hi\n"
    failed = b.ctr("run", "--rm", IMAGE, "t-exit", "sh", "-c", "exit 3", check=False)
    assert failed.returncode == 3
    # --rm removed everything: no task, no container, no bundle, no shim.
    assert b.ctr("containers", "ls", "-q").stdout.split() == []
    assert task_status(b, "t-echo") is None
    bundles = b.state / "io.containerd.runtime.v2.task" / "default"
    assert not bundles.exists() or list(bundles.iterdir()) == []
    wait_until(lambda: shims_of(b.workdir) == [], what="shims gone")


def test_detached_task_commands(berthd: tuple[Berthd, str]) -> None:
    b, _ = berthd
    b.ctr("run", "-d", IMAGE, "t-d", "sleep", "300")
    try:
        assert task_status(b, "t-d") == "RUNNING"
        pids = rows(b.ctr("task", "ps", "t-d").stdout)
        assert len(pids) == 1 and pids[0][0].isdigit()
        got = b.ctr("task", "exec", "--exec-id", "e1", "t-d", "sh", "-c", "echo from-exec")
        assert got.stdout == "from-exec\n"
        b.ctr("task", "pause", "t-d")
        assert task_status(b, "t-d") == "PAUSED"
        b.ctr("task", "resume", "t-d")
        assert task_status(b, "t-d") == "RUNNING"
        metrics = b.ctr("task", "metrics", "t-d").stdout
        assert "pids.current" in metrics and "memory.usage_in_bytes" in metrics
        # The server refuses to delete a container that has a task (containerd's
        # client refuses too; berthd also guards its own API).
        with b.channel() as ch:
            with pytest.raises(grpc.RpcError) as info:
                containers_pb2_grpc.ContainersStub(ch).Delete(
                    containers_pb2.DeleteContainerRequest(id="t-d"), metadata=NS, timeout=10
                )
            assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            # A second Create on the same container: AlreadyExists.
            with pytest.raises(grpc.RpcError) as info:
                tasks_pb2_grpc.TasksStub(ch).Create(
                    tasks_pb2.CreateTaskRequest(container_id="t-d"), metadata=NS, timeout=10
                )
            assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
        b.ctr("task", "kill", "-s", "SIGKILL", "t-d")
        wait_until(lambda: task_status(b, "t-d") == "STOPPED", what="task stopped")
        b.ctr("task", "rm", "t-d")
        assert task_status(b, "t-d") is None
    finally:
        b.ctr("task", "rm", "-f", "t-d", check=False)
        b.ctr("containers", "rm", "t-d", check=False)
    assert "t-d" not in b.ctr("containers", "ls", "-q").stdout.split()


def test_tty_run(berthd: tuple[Berthd, str]) -> None:
    b, _ = berthd
    need_binary("script")
    cmd = f"ctr --address {b.address} run -t --rm {IMAGE} t-tty sh -c 'tty; echo done'"
    out = subprocess.run(
        ["script", "-qec", cmd, "/dev/null"],
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    text = out.stdout.decode(errors="replace")
    assert out.returncode == 0, text + out.stderr.decode(errors="replace")
    assert "/dev/pts/" in text and "done" in text


def test_runc_v1_runtime(berthd: tuple[Berthd, str]) -> None:
    b, _ = berthd
    need_binary("containerd-shim-runc-v1")
    out = b.ctr("run", "--rm", "--runtime", "io.containerd.runc.v1", IMAGE, "t-v1", "echo", "v1")
    assert out.stdout == "v1\n"


def test_unknown_runtime_names_the_binary(berthd: tuple[Berthd, str]) -> None:
    b, _ = berthd
    out = b.ctr(
        "run", "--rm", "--runtime", "io.containerd.nope.v9", IMAGE, "t-no", "true", check=False
    )
    assert out.returncode != 0
    assert "containerd-shim-nope-v9" in out.stderr, out.stderr
    b.ctr("containers", "rm", "t-no", check=False)


def test_events_of_one_run_in_order(berthd: tuple[Berthd, str]) -> None:
    b, _ = berthd
    events = CtrEvents(b.address)
    pokes = iter(range(1000))

    def poke() -> str:
        name = f"ev-mark-{next(pokes)}"
        b.ctr("namespaces", "create", name)
        b.ctr("namespaces", "rm", name)
        return name

    try:
        events.subscribed(poke)
        b.ctr("run", "-d", IMAGE, "t-ev", "sleep", "300")
        b.ctr("task", "exec", "--exec-id", "x1", "t-ev", "true")
        b.ctr("task", "pause", "t-ev")
        b.ctr("task", "resume", "t-ev")
        b.ctr("task", "kill", "-s", "SIGKILL", "t-ev")
        wait_until(lambda: task_status(b, "t-ev") == "STOPPED", what="stopped")
        b.ctr("task", "rm", "t-ev")
        events.wait_for("/tasks/delete")
        b.ctr("containers", "rm", "t-ev")
        events.wait_for("/containers/delete")
    finally:
        out = "".join(events.stop())
    topics = [
        m.group(1)
        for line in out.splitlines()
        if "t-ev" in line and (m := re.search(r" (/tasks/[a-z-]+) ", line))
    ]
    expected = [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exec-added",
        "/tasks/exec-started",
        "/tasks/exit",  # the exec's
        "/tasks/paused",
        "/tasks/resumed",
        "/tasks/exit",
        "/tasks/delete",
    ]
    assert topics == expected, out


def test_twenty_concurrent_containers_leave_nothing(berthd: tuple[Berthd, str]) -> None:
    b, _ = berthd

    def run(i: int) -> int:
        return b.ctr("run", "--rm", IMAGE, f"t-many-{i}", "true", check=False).returncode

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(run, range(20)))
    assert codes == [0] * 20
    assert b.ctr("containers", "ls", "-q").stdout.split() == []
    wait_until(lambda: shims_of(b.workdir) == [], what="no shim left")
    rootfs = [m for m in mounts_under(b.workdir) if m.endswith("/rootfs")]
    assert rootfs == []
    bundles = b.state / "io.containerd.runtime.v2.task" / "default"
    assert not bundles.exists() or list(bundles.iterdir()) == []


def test_container_metrics_on_the_page(berthd: tuple[Berthd, str]) -> None:
    b, metrics = berthd
    need_binary("promtool")

    def page() -> str:
        with urllib.request.urlopen(f"http://{metrics}/v1/metrics", timeout=10) as r:
            return str(r.read().decode())

    b.ctr("run", "-d", IMAGE, "t-m", "sleep", "300")
    try:
        text = page()
        assert re.search(r'container_pids_current\{[^}]*container_id="t-m"', text), text[-3000:]
        assert 'namespace="default"' in text
        for line in promtool_findings(text.encode()):
            assert any(finding in line for finding in INHERITED_LINT), line
    finally:
        b.ctr("task", "kill", "-s", "SIGKILL", "t-m", check=False)
        wait_until(lambda: task_status(b, "t-m") in ("STOPPED", None), what="stopped")
        b.ctr("task", "rm", "t-m", check=False)
        b.ctr("containers", "rm", "t-m", check=False)
    assert 'container_id="t-m"' not in page()


def test_shim_killed_marks_the_task_stopped(berthd: tuple[Berthd, str]) -> None:
    b, _ = berthd
    b.ctr("run", "-d", IMAGE, "t-shim", "sleep", "300")
    try:
        before = set(shims_of(b.workdir))
        assert before
        for pid in before:
            os.kill(pid, signal.SIGKILL)
        # Listed as stopped (with the exit the cleanup recorded) until deleted.
        wait_until(lambda: task_status(b, "t-shim") == "STOPPED", what="stopped")
        b.ctr("task", "rm", "t-shim")
        assert task_status(b, "t-shim") is None
    finally:
        b.ctr("task", "rm", "-f", "t-shim", check=False)
        b.ctr("containers", "rm", "t-shim", check=False)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_running_container_survives_a_daemon_restart(restartable: Berthd, how: int) -> None:
    b, d = restartable, restartable.workdir
    b.ctr("run", "-d", IMAGE, "t-live", "sh", "-c", "trap 'exit 7' TERM; sleep 300 & wait")
    pid = rows(b.ctr("task", "ls").stdout)[0][1]
    if how == signal.SIGKILL:
        b.kill9()
    else:
        assert b.stop() == 0
    assert shims_of(d), "the shim must outlive the daemon"
    b.start()
    assert rows(b.ctr("task", "ls").stdout) == [["t-live", pid, "RUNNING"]]
    b.ctr("task", "kill", "t-live")
    wait_until(lambda: task_status(b, "t-live") == "STOPPED", what="stopped")
    # the exit status reaches the daemon through the reconnected shim
    with b.channel() as ch:
        got = tasks_pb2_grpc.TasksStub(ch).Get(
            tasks_pb2.GetRequest(container_id="t-live"), metadata=NS, timeout=10
        )
    assert got.process.exit_status == 7
    b.ctr("task", "rm", "t-live")
    b.ctr("containers", "rm", "t-live")
    wait_until(lambda: shims_of(d) == [], what="shim gone")


def _criu_problem() -> str | None:
    """criu's own reason it cannot run here, or None when ``criu check`` passes."""
    if subprocess.run(["which", "criu"], capture_output=True).returncode != 0:
        return "criu is not installed"
    out = subprocess.run(["criu", "check"], capture_output=True, text=True, timeout=60)
    if out.returncode == 0:
        return None
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
    return "criu check: " + " / ".join(lines[-3:])


def test_checkpoint_and_restore(berthd: tuple[Berthd, str]) -> None:
    b, _ = berthd
    problem = _criu_problem()
    b.ctr("run", "-d", IMAGE, "t-cp", "sh", "-c", "i=0; while true; do i=$((i+1)); sleep 1; done")
    try:
        out = b.ctr("containers", "checkpoint", "--task", "t-cp", "berth-cp/t-cp:1", check=False)
        if problem is not None:
            # The RPC answers the shim's (criu's) failure, never a fake success,
            # and the task keeps running.
            assert out.returncode != 0
            assert "criu" in out.stderr, out.stderr
            assert task_status(b, "t-cp") == "RUNNING"
            pytest.skip(problem)
        assert out.returncode == 0, out.stderr
        # The checkpoint is in the content store, under the image the client made.
        assert "berth-cp/t-cp:1" in b.ctr("images", "ls", "-q").stdout
        b.ctr("task", "kill", "-s", "SIGKILL", "t-cp")
        wait_until(lambda: task_status(b, "t-cp") == "STOPPED", what="stopped")
        b.ctr("task", "rm", "t-cp")
        b.ctr("containers", "rm", "t-cp")
        b.ctr("containers", "restore", "--live", "t-cp", "berth-cp/t-cp:1")
        wait_until(lambda: task_status(b, "t-cp") == "RUNNING", what="restored")
    finally:
        b.ctr("task", "kill", "-s", "SIGKILL", "t-cp", check=False)
        wait_until(lambda: task_status(b, "t-cp") in ("STOPPED", None), what="stopped")
        b.ctr("task", "rm", "t-cp", check=False)
        b.ctr("containers", "rm", "t-cp", check=False)
        b.ctr("images", "rm", "berth-cp/t-cp:1", check=False)


def test_daemon_killed_mid_create_leaves_nothing_a_restart_cannot_clean(
    restartable: Berthd,
) -> None:
    b, d = restartable, restartable.workdir
    bundle = b.state / "io.containerd.runtime.v2.task" / "default" / "t-mid"
    argv = ["ctr", "--address", b.address, "run", "-d", IMAGE, "t-mid", "sleep", "300"]
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not bundle.exists():
        time.sleep(0.002)
    assert bundle.exists(), "the create never started"
    b.kill9()
    run.communicate(timeout=30)
    b.start()
    # Whatever the kill interrupted, the task is either there (and can be
    # stopped and removed) or gone; the container can then be removed.
    if task_status(b, "t-mid") is not None:
        b.ctr("task", "kill", "-s", "SIGKILL", "t-mid", check=False)
        wait_until(lambda: task_status(b, "t-mid") in ("STOPPED", None), what="stopped")
        b.ctr("task", "rm", "-f", "t-mid", check=False)
    assert task_status(b, "t-mid") is None
    b.ctr("containers", "rm", "t-mid", check=False)
    assert "t-mid" not in b.ctr("containers", "ls", "-q").stdout.split()
    wait_until(lambda: shims_of(d) == [], what="no shim left")
    wait_until(lambda: not bundle.exists(), what="bundle removed")
    # And the daemon runs containers as before.
    assert b.ctr("run", "--rm", IMAGE, "t-after", "echo", "ok").stdout == "ok\n"


def test_gc_keeps_what_a_container_uses(berthd: tuple[Berthd, str]) -> None:
    b, _ = berthd
    b.ctr("run", "-d", IMAGE, "t-gc", "sleep", "300")
    try:
        b.ctr("images", "rm", "--sync", IMAGE)
        # The image is gone; the container's snapshot (and its parents) stay,
        # and the container keeps running.
        snaps = b.ctr("snapshots", "ls").stdout
        assert "t-gc" in snaps
        assert task_status(b, "t-gc") == "RUNNING"
        assert b.ctr("task", "exec", "--exec-id", "g1", "t-gc", "true").returncode == 0
    finally:
        b.ctr("task", "kill", "-s", "SIGKILL", "t-gc", check=False)
        wait_until(lambda: task_status(b, "t-gc") in ("STOPPED", None), what="stopped")
        b.ctr("task", "rm", "t-gc", check=False)
        b.ctr("containers", "rm", "t-gc", check=False)
        tar = build_image_tar(b.workdir / "img-again.tar", IMAGE)
        b.ctr("images", "import", str(tar))
    # With the container gone, so is its snapshot.
    wait_until(lambda: "t-gc" not in b.ctr("snapshots", "ls").stdout, what="snapshot freed")


def test_exit_while_the_daemon_is_down_reaches_wait(restartable: Berthd) -> None:
    b = restartable
    b.ctr("run", "-d", IMAGE, "t-gone", "sh", "-c", "sleep 300 & wait; exit 5")
    pid = int(rows(b.ctr("task", "ls").stdout)[0][1])
    b.kill9()
    # The container ends while no daemon runs: only its shim sees it.
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        os.kill(int(child), signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.05)
    b.start()
    with b.channel() as ch:
        waited = tasks_pb2_grpc.TasksStub(ch).Wait(
            tasks_pb2.WaitRequest(container_id="t-gone"), metadata=NS, timeout=30
        )
    assert waited.exit_status == 5
    assert task_status(b, "t-gone") == "STOPPED"
    b.ctr("task", "rm", "t-gone")
    b.ctr("containers", "rm", "t-gone")


def test_checkpoint_to_restore_from_stays_until_the_task_is_deleted(
    berthd: tuple[Berthd, str],
) -> None:
    """The shim restores at Start, so what Create unpacked must outlive Create."""
    b, _ = berthd
    b.wait_startup_gc()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("inventory.img")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"dummy"))
    blob = raw.getvalue()
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    scratch = b.root / "io.containerd.service.v1.tasks-service" / "checkpoints"
    try:
        with b.channel() as ch:
            # Nothing references the blob, and the lease `ctr containers
            # create` deletes sets a collection going (as in containerd): it
            # is committed as a GC root in the same request.
            committed = content_pb2_grpc.ContentStub(ch).Write(
                iter(
                    [
                        content_pb2.WriteContentRequest(
                            action=content_pb2.WriteAction.COMMIT,
                            ref="cp-blob",
                            total=len(blob),
                            expected=digest,
                            data=blob,
                            labels={"containerd.io/gc.root": "checkpoint-test"},
                        )
                    ]
                ),
                metadata=NS,
                timeout=30,
            )
            # One answer, then the last one again as containerd sends it.
            assert [r.digest for r in committed] == [digest, digest]
            b.ctr("containers", "create", IMAGE, "t-rs", "true")
            mounts = (
                snapshots_pb2_grpc.SnapshotsStub(ch)
                .Mounts(
                    snapshots_pb2.MountsRequest(snapshotter="overlayfs", key="t-rs"), metadata=NS
                )
                .mounts
            )
            tasks = tasks_pb2_grpc.TasksStub(ch)
            tasks.Create(
                tasks_pb2.CreateTaskRequest(
                    container_id="t-rs",
                    rootfs=list(mounts),
                    checkpoint=descriptor_pb2.Descriptor(
                        media_type=CHECKPOINT_MEDIA_TYPE, digest=digest, size=len(blob)
                    ),
                ),
                metadata=NS,
                timeout=60,
            )
            restored = list(scratch.glob("restore-*"))
            assert len(restored) == 1 and (restored[0] / "inventory.img").read_bytes() == b"dummy"
            tasks.Delete(tasks_pb2.DeleteTaskRequest(container_id="t-rs"), metadata=NS, timeout=60)
            assert list(scratch.glob("restore-*")) == []
    finally:
        b.ctr("task", "rm", "-f", "t-rs", check=False)
        b.ctr("containers", "rm", "t-rs", check=False)
        b.ctr("content", "rm", digest, check=False)


def test_legacy_runtime_name_runs_on_the_v2_shim(berthd: tuple[Berthd, str]) -> None:
    b, _ = berthd
    runtime = ("--runtime", "io.containerd.runtime.v1.linux")
    out = b.ctr("run", "--rm", *runtime, IMAGE, "t-legacy", "echo", "legacy")
    assert out.stdout == "legacy\n"
