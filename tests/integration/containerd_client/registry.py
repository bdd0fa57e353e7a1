"""A private ``docker-registry`` (Debian's distribution 2.8) on 127.0.0.1, and a push client.

The registry is ``tests.support.registry``'s (config and storage under a temp
dir, a free loopback port, stopped by pid), here accepting signed schema 1
manifests (the tests still pull two).
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

from tests.integration.containerd_client.standins import Catalogue, Repository
from tests.support.registry import Registry as LoopbackRegistry
from tests.support.registry import RegistryError

__all__ = ["Registry", "RegistryError"]


class Registry(LoopbackRegistry):
    """``with Registry(workdir) as reg:`` — a running registry at ``reg.addr``
    (host:port) that takes schema 1 manifests, with a push client."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, schema1=True)

    @property
    def addr(self) -> str:
        return self.host

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
