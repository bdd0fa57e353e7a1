"""Real containers for the runtime tests: a busybox rootfs, an OCI spec, an event intake.

The spec mirrors containerd 1.6's default Linux spec (what ``ctr oci spec``
prints, with cgroupsPath ``/<namespace>/<id>`` as containerd sets it); the
rootfs is a directory holding busybox-static and the applet links the tests
use, handed to the shim as a bind mount the way a snapshot's mounts are.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from google.protobuf import empty_pb2, message

from api import typeurl
from api.containerd.services.ttrpc.events.v1 import events_pb2 as ttrpc_events
from api.ttrpc import Context, Method, Server
from api.types import Mount
from tests.support import is_root

SHIM = "containerd-shim-runc-v2"
APPLETS = ("sh", "echo", "sleep", "cat", "true", "false", "stty")

_CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]


def need_real_shim() -> None:
    if not is_root():
        pytest.skip("running containers needs root")
    for binary in ("runc", SHIM):
        if shutil.which(binary) is None:
            pytest.skip(f"needs {binary!r} (apt-get install runc containerd)")
    if not Path("/bin/busybox").exists():
        pytest.skip("needs /bin/busybox (apt-get install busybox-static)")


def make_rootfs(path: Path) -> Path:
    """A directory with /bin/busybox and its applet links: the image of the tests."""
    for d in ("bin", "proc", "dev", "sys", "run", "tmp"):
        (path / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", path / "bin" / "busybox")
    for applet in APPLETS:
        (path / "bin" / applet).symlink_to("busybox")
    return path


def rootfs_mounts(rootfs: Path) -> tuple[Mount, ...]:
    return (Mount(type="bind", source=str(rootfs), options=("rbind", "rw")),)


def _mount(dest: str, type: str, source: str, *options: str) -> dict[str, object]:
    return {"destination": dest, "type": type, "source": source, "options": list(options)}


def oci_spec(namespace: str, id: str, args: Sequence[str]) -> bytes:
    spec = {
        "ociVersion": "1.0.2-dev",
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": ["PATH=/bin"],
            "cwd": "/",
            "capabilities": {k: _CAPS for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs"},
        "hostname": id,
        "mounts": [
            _mount("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
            _mount("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
            _mount(
                "/dev/pts",
                "devpts",
                "devpts",
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ),
            _mount("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777"),
            _mount("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
            _mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
            _mount("/run", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755"),
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "cgroupsPath": f"/{namespace}/{id}",
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"],
        },
    }
    return json.dumps(spec).encode()


def process_spec(args: Sequence[str]) -> bytes:
    """An OCI Process for an exec (what ctr puts in the exec's spec Any)."""
    return json.dumps(
        {
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": ["PATH=/bin"],
            "cwd": "/",
            "capabilities": {k: _CAPS for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True,
        }
    ).encode()


def shim_pids(marker: str) -> list[int]:
    """Pids of runc shims whose command line contains ``marker`` (the test's gRPC address)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path("/proc", entry, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            argv
            and argv[0].endswith(SHIM.encode())
            and marker.encode() in argv
            and alive(int(entry))
        ):
            pids.append(int(entry))
    return pids


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def eventually(check: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.05)


def mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path)]


def shim_socket(grpc_address: str, namespace: str, id: str) -> str:
    """Where the runc shim of ``id`` listens (runtime/v2/shim/util_unix.go SocketAddress)."""
    digest = hashlib.sha256(os.path.join(grpc_address, namespace, id).encode()).hexdigest()
    return f"/run/containerd/s/{digest}"


def force_cleanup(tmp: Path, marker: str, namespace: str, ids: Sequence[str]) -> None:
    """Leave the machine as before even when a test failed half-way.

    Killed shims leave their sockets in /run/containerd/s (containerd does
    not remove them either), and runc leaves the namespace's parent cgroups.
    """
    for pid in shim_pids(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for id in ids:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(shim_socket(marker, namespace, id))
    runc_root = f"/run/containerd/runc/{namespace}"
    if os.path.isdir(runc_root):
        for id in os.listdir(runc_root):
            subprocess.run(
                ["runc", "--root", runc_root, "delete", "--force", id],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(runc_root, ignore_errors=True)
    for point in sorted(mounts_under(str(tmp)), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    for parent in Path("/sys/fs/cgroup").glob(f"*/{namespace}"):
        for child in parent.iterdir():
            if child.is_dir():
                with contextlib.suppress(OSError):
                    child.rmdir()
        with contextlib.suppress(OSError):
            parent.rmdir()
    with contextlib.suppress(OSError):
        Path("/sys/fs/cgroup", namespace).rmdir()  # the unified hierarchy


@dataclass
class RecordingPublisher:
    """An event sink for the manager: keeps what it is given, in order."""

    events: list[tuple[str, str, message.Message]] = field(default_factory=list)

    async def publish(self, namespace: str, event: message.Message, topic: str = "") -> None:
        self.events.append((namespace, topic or typeurl.topic_of(event), event))

    def topics(self) -> list[str]:
        return [topic for _, topic, _ in self.events]


class EventIntake:
    """A ttrpc server for TTRPC_ADDRESS that records what shims Forward."""

    def __init__(self) -> None:
        self.server = Server()
        self.envelopes: list[ttrpc_events.ForwardRequest] = []
        self.server.register(
            "containerd.services.events.ttrpc.v1.Events",
            {"Forward": Method(ttrpc_events.ForwardRequest, self._forward)},
        )

    async def _forward(self, req: ttrpc_events.ForwardRequest, ctx: Context) -> empty_pb2.Empty:
        self.envelopes.append(req)
        return empty_pb2.Empty()

    def topics(self, namespace: str) -> list[str]:
        return [r.envelope.topic for r in self.envelopes if r.envelope.namespace == namespace]
