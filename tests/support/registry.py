"""A real registry on loopback (Debian's ``docker-registry``, distribution 2.8)
on a temp dir, and what its access log says it served.

``Registry(workdir)`` writes its own config (filesystem storage under
``workdir``, plain HTTP on a free loopback port, access log on) and runs it
as a child process stopped by pid.  ``blob_gets()`` reads the access log:
one entry per successful ``GET /v2/<name>/blobs/<digest>``, with the bytes
sent, so a test can count how often each blob left the registry.
"""

from __future__ import annotations

import http.client
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest

from tests.support import Proc, free_port

BINARY = "docker-registry"

# The combined log format the registry's access log uses.
_ACCESS = re.compile(
    r'^\S+ \S+ \S+ \[[^\]]+\] "(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" '
    r"(?P<status>\d{3}) (?P<size>\d+|-)"
)
_BLOB = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>[a-z0-9]+:[a-f0-9]+)$")


def need_registry() -> None:
    if shutil.which(BINARY) is None:
        pytest.skip(f"needs {BINARY!r} (apt-get install docker-registry)")


@dataclass(frozen=True)
class BlobGet:
    name: str
    digest: str
    size: int


class RegistryError(RuntimeError):
    """The registry did not start, or refused a request."""


class Registry:
    """``with Registry(workdir) as reg:`` — a running registry at ``reg.host``;
    ``schema1`` also accepts signed schema 1 manifests (old images)."""

    def __init__(self, workdir: Path, *, schema1: bool = False) -> None:
        self.workdir = workdir
        self.schema1 = schema1
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.log = workdir / "registry.log"
        self.config = workdir / "registry.yml"
        self.proc: Proc | None = None

    def start(self, timeout: float = 20.0) -> Registry:
        path = shutil.which(BINARY)
        if path is None:
            raise RegistryError(f"{BINARY!r} not found (apt-get install docker-registry)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.workdir / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n"
            + ("compatibility:\n  schema1:\n    enabled: true\n" if self.schema1 else "")
        )
        self.proc = Proc([path, "serve", str(self.config)], self.log)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.popen.poll() is not None:
                raise RegistryError(f"registry exited:\n{self.log.read_text()}")
            try:
                if self.request("GET", "/v2/")[0] == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RegistryError(f"registry on {self.host} did not answer")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request: status, headers (lower-cased names), body."""
        conn = http.client.HTTPConnection(self.host, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def blob_gets(self) -> list[BlobGet]:
        """Every blob the registry sent (GET answered 200), in log order."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            m = _ACCESS.match(line)
            if m is None or m["method"] != "GET" or m["status"] != "200":
                continue
            b = _BLOB.match(m["path"])
            if b is not None:
                size = int(m["size"]) if m["size"] != "-" else 0
                out.append(BlobGet(b["name"], b["digest"], size))
        return out

    def gets_by_digest(self) -> Counter[str]:
        return Counter(g.digest for g in self.blob_gets())

    def bytes_served(self) -> int:
        return sum(g.size for g in self.blob_gets())

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
