"""The Version service (``ctr version``) and the build identity behind it."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import empty_pb2

from api.containerd.services.version.v1 import version_pb2, version_pb2_grpc
from daemon import registry
from daemon.capabilities import GrpcService
from daemon.registry import InitContext, Registration

SERVICE_NAME = "containerd.services.version.v1.Version"
PACKAGE = "berthd"


@dataclass(frozen=True)
class BuildInfo:
    version: str  # "v0.1.0", containerd's style
    revision: str  # the source commit, or "unknown"


def _git_revision(start: Path) -> str | None:
    """HEAD's commit when running from a git checkout (read directly, no git binary)."""
    for d in (start, *start.parents):
        git = d / ".git"
        if not git.is_dir():
            continue
        try:
            head = (git / "HEAD").read_text().strip()
            if not head.startswith("ref: "):
                return head or None
            ref = head[5:]
            ref_file = git / ref
            if ref_file.is_file():
                return ref_file.read_text().strip() or None
            packed = git / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    sha, _, name = line.partition(" ")
                    if name == ref:
                        return sha
        except OSError:
            return None
        return None
    return None


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def installed_version(name: str, path: Sequence[str] | None = None) -> str | None:
    """The version of the installed distribution ``name``, as importlib.metadata
    finds it (without the email, zip and csv modules importing it loads: 2 MB
    in a process that never needs them again): the ``Version`` header of the
    first ``<name>-<version>.dist-info/METADATA`` or ``<name>.egg-info/PKG-INFO``
    along ``path`` (``sys.path`` by default)."""
    wanted = _normalized(name)
    for entry in sys.path if path is None else path:
        where = entry or "."
        try:
            names = sorted(os.listdir(where))
        except OSError:
            continue
        for n in names:
            stem, dot, kind = n.rpartition(".")
            if not dot or kind not in ("dist-info", "egg-info"):
                continue
            if _normalized(stem.split("-", 1)[0]) != wanted:
                continue
            headers = os.path.join(where, n, "METADATA" if kind == "dist-info" else "PKG-INFO")
            try:
                with open(headers, encoding="utf-8") as f:
                    for line in f:
                        if not line.strip():
                            break  # the headers end here
                        key, _, value = line.partition(":")
                        if key == "Version":
                            return value.strip()
            except OSError:
                continue
    return None


def build_info() -> BuildInfo:
    version = installed_version(PACKAGE) or "0.0.0+unknown"
    revision = os.environ.get("BERTHD_REVISION") or _git_revision(Path(__file__).resolve().parent)
    return BuildInfo("v" + version, revision or "unknown")


class VersionServicer(version_pb2_grpc.VersionServicer):
    def __init__(self, info: BuildInfo) -> None:
        self.info = info

    async def Version(
        self, request: empty_pb2.Empty, context: grpc.aio.ServicerContext[Any, Any]
    ) -> version_pb2.VersionResponse:
        return version_pb2.VersionResponse(version=self.info.version, revision=self.info.revision)


async def _init(ic: InitContext) -> GrpcService:
    servicer = VersionServicer(ic.resource(BuildInfo))
    return GrpcService(
        (SERVICE_NAME,), lambda s: version_pb2_grpc.add_VersionServicer_to_server(servicer, s)
    )


REGISTRATIONS = (Registration(registry.GRPC, "version", _init),)
