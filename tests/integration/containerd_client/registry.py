"""A private ``docker-registry`` (Debian's distribution 2.8) on 127.0.0.1, and a push client.

The registry keeps its config and storage under a temp dir, listens on a free
loopback port, accepts signed schema 1 manifests (the tests still pull two),
and is stopped by pid.
"""

from __future__ import annotations

import http.client
import json
import shutil
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from tests.integration.containerd_client.standins import Catalogue, Repository
from tests.support import Proc, free_port

CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
http:
  addr: {addr}
compatibility:
  schema1:
    enabled: true
"""


class RegistryError(RuntimeError):
    pass


class Registry:
    """``with Registry(workdir) as reg:`` — a running registry at ``reg.addr`` (host:port)."""

    def __init__(self, workdir: Path, binary: str = "docker-registry") -> None:
        self.workdir = workdir
        self.binary = binary
        self.addr = ""
        self.proc: Proc | None = None

    def start(self, timeout: float = 20.0) -> Registry:
        path = shutil.which(self.binary)
        if path is None:
            raise RegistryError(f"{self.binary!r} not found (apt-get install docker-registry)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.addr = f"127.0.0.1:{free_port()}"
        config = self.workdir / "config.yml"
        config.write_text(CONFIG.format(root=self.workdir / "storage", addr=self.addr))
        self.proc = Proc([path, "serve", str(config)], self.workdir / "registry.log")
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.popen.poll() is not None:
                raise RegistryError(f"docker-registry exited: {self.proc.output()}")
            try:
                status, _, _ = self.request("GET", "/v2/")
                if status == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RegistryError(f"docker-registry not answering on {self.addr}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.addr, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def push_blob(self, repo: str, digest: str, data: bytes) -> None:
        status, headers, body = self.request("POST", f"/v2/{repo}/blobs/uploads/")
        if status != 202:
            raise RegistryError(f"starting upload to {repo}: {status} {body!r}")
        location = urlsplit(headers["location"])
        query = f"{location.query}&digest={digest}" if location.query else f"digest={digest}"
        target = f"{location.path}?{query}"
        status, _, body = self.request(
            "PUT", target, data, {"Content-Type": "application/octet-stream"}
        )
        if status != 201:
            raise RegistryError(f"uploading {digest} to {repo}: {status} {body!r}")

    def push_manifest(self, repo: str, reference: str, media_type: str, data: bytes) -> str:
        status, headers, body = self.request(
            "PUT", f"/v2/{repo}/manifests/{reference}", data, {"Content-Type": media_type}
        )
        if status != 201:
            raise RegistryError(f"pushing {repo}:{reference}: {status} {body!r}")
        return headers.get("docker-content-digest", "")

    def push_repository(self, repo: Repository) -> None:
        for digest, data in repo.blobs.items():
            self.push_blob(repo.name, digest, data)
        for m in repo.manifests:
            named = self.push_manifest(repo.name, m.reference, m.media_type, m.data)
            if named != m.digest:
                raise RegistryError(f"{repo.name}:{m.reference}: expected {m.digest}, got {named}")

    def push(self, cat: Catalogue) -> None:
        for repo in cat.repositories:
            self.push_repository(repo)

    def catalog(self) -> list[str]:
        status, _, body = self.request("GET", "/v2/_catalog?n=1000")
        if status != 200:
            raise RegistryError(f"catalog: {status} {body!r}")
        repos: list[str] = json.loads(body)["repositories"]
        return repos
