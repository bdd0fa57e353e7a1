"""Real etcd clusters for the tests: members on loopback ports in a temp dir.

``EtcdCluster(workdir, size)`` starts ``size`` members of one cluster (the
Debian ``etcd`` binary) and waits until it has a leader; members are
stopped, killed (-9) and restarted by pid, on their own data dirs, so a
restarted member keeps what it had.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import grpc
import pytest

from api.etcd.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from tests.support import Proc, free_port
from tests.support.tls import Pki

ETCD = "etcd"


def need_etcd() -> None:
    if shutil.which(ETCD) is None:
        pytest.skip("needs etcd on PATH (apt-get install etcd-server)")


@dataclass
class Member:
    name: str
    data: Path
    client_port: int
    peer_port: int
    log: Path
    proc: Proc | None = field(default=None)
    scheme: str = "http"

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.popen.poll() is None


class EtcdCluster:
    """``tls``: clients must come over TLS with a certificate ``tls.ca`` signed."""

    def __init__(self, workdir: Path, size: int = 1, *extra: str, tls: Pki | None = None) -> None:
        self.workdir = workdir
        self.token = uuid.uuid4().hex[:12]
        self.tls = tls
        self.extra: tuple[str, ...] = extra
        if tls is not None:
            self.extra += (
                "--cert-file", str(tls.server_cert),
                "--key-file", str(tls.server_key),
                "--trusted-ca-file", str(tls.ca),
                "--client-cert-auth",
            )  # fmt: skip
        self.members = [
            Member(
                f"m{i}",
                workdir / f"m{i}",
                free_port(),
                free_port(),
                workdir / f"m{i}.log",
                scheme="https" if tls else "http",
            )
            for i in range(size)
        ]

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def _argv(self, m: Member) -> list[str]:
        initial = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        return [
            ETCD,
            "--name", m.name,
            "--data-dir", str(m.data),
            "--listen-client-urls", m.endpoint,
            "--advertise-client-urls", m.endpoint,
            "--listen-peer-urls", m.peer_url,
            "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", initial,
            "--initial-cluster-token", self.token,
            "--initial-cluster-state", "new",
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
            "--logger", "zap",
            "--log-level", "warn",
            *self.extra,
        ]  # fmt: skip

    def start_member(self, i: int) -> None:
        m = self.members[i]
        self.workdir.mkdir(parents=True, exist_ok=True)
        m.proc = Proc(self._argv(m), m.log)

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        for i in range(len(self.members)):
            self.start_member(i)
        self.wait_healthy(timeout)
        return self

    def kill(self, i: int) -> None:
        """SIGKILL member ``i`` (its data dir stays)."""
        m = self.members[i]
        assert m.proc is not None
        m.proc.signal(signal.SIGKILL)
        m.proc.wait()
        m.proc = None

    def stop(self) -> None:
        for m in self.members:
            if m.proc is not None:
                m.proc.stop()
                m.proc = None

    def leader_answers(self, i: int) -> bool:
        """Member ``i`` serves a linearizable read (it has a leader and quorum)."""
        m = self.members[i]
        target = f"127.0.0.1:{m.client_port}"
        if self.tls is not None:
            t = self.tls
            creds = grpc.ssl_channel_credentials(
                t.ca.read_bytes(), t.client_key.read_bytes(), t.client_cert.read_bytes()
            )
            channel = grpc.secure_channel(target, creds)
        else:
            channel = grpc.insecure_channel(target)
        try:
            with channel as ch:
                rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b"/health"), timeout=1.0)
            return True
        except grpc.RpcError:
            return False

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        running = [i for i, m in enumerate(self.members) if m.proc is not None]
        while time.monotonic() < deadline:
            for i in running:
                m = self.members[i]
                if m.proc is not None and m.proc.popen.poll() is not None:
                    raise RuntimeError(f"etcd {m.name} exited:\n{m.log.read_text()[-3000:]}")
            if all(self.leader_answers(i) for i in running):
                return
            time.sleep(0.1)
        logs = "\n".join(m.log.read_text()[-2000:] for m in self.members if m.log.exists())
        raise TimeoutError(f"etcd cluster not healthy after {timeout}s:\n{logs}")

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def etcd_cluster(
    workdir: Path, size: int = 1, *extra: str, tls: Pki | None = None
) -> Iterator[EtcdCluster]:
    need_etcd()
    cluster = EtcdCluster(workdir, size, *extra, tls=tls)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def kill_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
