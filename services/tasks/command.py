"""Running a shim binary's ``start`` and ``delete`` commands (containerd's binary.go, shim/util.go).

Both are run as::

    <shim> -namespace NS -address GRPC_ADDR -publish-binary BIN [flags] -id ID [...] start|delete

in their own process group, with the daemon's environment plus
``GOMAXPROCS=2``, ``MAX_SHIM_VERSION=2``, ``TTRPC_ADDRESS``, ``GRPC_ADDRESS``,
``NAMESPACE`` (containerd 1.7 sets all five; 1.6 only the first and the
ttrpc address) and ``SCHED_CORE=1`` when core scheduling is on.

``start`` runs in the bundle directory with the runtime options (a
marshalled ``google.protobuf.Any``) on stdin, and prints where the shim
listens: either a bare address (``unix:///run/containerd/s/<hash>``) or, from
shims built on containerd 1.7, JSON bootstrap parameters
``{"version": 2, "address": ..., "protocol": "ttrpc"|"grpc"}``.

``delete`` cleans up after a shim that is gone: it kills and deletes the
container, unmounts the rootfs and prints a marshalled ``DeleteResponse``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC

from google.protobuf import any_pb2, message

from api import errdefs
from api.containerd.runtime.task.v2 import shim_pb2
from services.harness import spawn
from services.tasks.bundle import Bundle
from services.tasks.types import AnyValue, Exit

__all__ = [
    "MAX_SHIM_VERSION",
    "BootstrapParams",
    "ShimBinary",
    "parse_start_response",
]

log = logging.getLogger(__name__)

# The highest bootstrap-parameter version understood (containerd 1.7 sends 2).
MAX_SHIM_VERSION = 2


@dataclass(frozen=True)
class BootstrapParams:
    """Where to reach a shim: ``address`` speaking ``protocol`` ("ttrpc" or "grpc")."""

    version: int
    address: str
    protocol: str

    def encode(self) -> bytes:
        """The form stored in the bundle's ``address`` file (what the shim printed)."""
        if self.version < 2:
            return self.address.encode()
        doc = {"version": self.version, "address": self.address, "protocol": self.protocol}
        return json.dumps(doc).encode()


def parse_start_response(response: bytes) -> BootstrapParams:
    """Decode what a shim's ``start`` printed (or an ``address`` file).

    Anything that is not JSON bootstrap parameters of version 2 or more is
    a legacy bare ttrpc address.  Raises NotImplemented for a version above
    MAX_SHIM_VERSION, InvalidArgument for an empty address.
    """
    text = response.strip()
    version, address, protocol = 0, "", ""
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("version"), int) and doc["version"] >= 2:
        version = doc["version"]
        address = str(doc.get("address", ""))
        protocol = str(doc.get("protocol", ""))
    else:
        address = text.decode(errors="surrogateescape")
        protocol = "ttrpc"
    if version > MAX_SHIM_VERSION:
        raise errdefs.NotImplemented(f"unsupported shim version ({version})")
    if not address:
        raise errdefs.InvalidArgument("shim printed no address")
    return BootstrapParams(version=version, address=address, protocol=protocol.lower())


@dataclass(frozen=True)
class ShimBinary:
    """One shim binary and the daemon addresses it is told about."""

    path: str
    grpc_address: str
    ttrpc_address: str
    publish_binary: str
    sched_core: bool = False
    debug: bool = False

    def argv(self, namespace: str, args: list[str]) -> list[str]:
        return [
            self.path,
            "-namespace",
            namespace,
            "-address",
            self.grpc_address,
            "-publish-binary",
            self.publish_binary,
            *args,
        ]

    def env(self, namespace: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "GOMAXPROCS": "2",
                "MAX_SHIM_VERSION": str(MAX_SHIM_VERSION),
                "TTRPC_ADDRESS": self.ttrpc_address,
                "GRPC_ADDRESS": self.grpc_address,
                "NAMESPACE": namespace,
            }
        )
        if self.sched_core:
            env["SCHED_CORE"] = "1"
        return env

    async def _run(
        self,
        namespace: str,
        args: list[str],
        cwd: str,
        stdin: bytes | None,
        combined: bool,
    ) -> tuple[int, bytes, bytes]:
        # Not the loop's own subprocess_exec: on uvloop the command would keep
        # descriptors of ours, pass them to the shim it leaves running, and
        # its stdout would never reach its end (services/harness/spawn.py).
        proc = spawn.start(
            self.argv(namespace, args),
            cwd=cwd,
            env=self.env(namespace),
            stdin=spawn.PIPE if stdin is not None else spawn.DEVNULL,
            stdout=spawn.PIPE,
            stderr=spawn.STDOUT if combined else spawn.PIPE,
            # Its own group, as containerd's Setpgid: a signal to the daemon's
            # group spares the shim.
            start_new_session=True,
        )
        try:
            out, err = await proc.communicate(stdin)
        except BaseException:
            # Cancelled (a caller's timeout): the command must not linger.
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                await proc.wait()
            raise
        assert proc.returncode is not None
        return proc.returncode, out or b"", err or b""

    async def start(
        self,
        bundle: Bundle,
        options: AnyValue | None,
    ) -> BootstrapParams:
        """Run ``start`` for ``bundle`` and return where the new shim listens.

        Raises Unknown with the shim's output when it fails, NotImplemented
        for bootstrap parameters of an unknown version.  Cancelling it kills
        the command.
        """
        args = ["-id", bundle.id]
        if self.debug:
            args.append("-debug")
        args.append("start")
        stdin = None
        if options is not None:
            stdin = any_pb2.Any(type_url=options.type_url, value=options.value).SerializeToString()
        try:
            rc, out, _ = await self._run(bundle.namespace, args, bundle.path, stdin, combined=True)
        except OSError as e:
            raise errdefs.Unknown(f"exec {self.path}: {e}") from None
        if rc != 0:
            text = out.decode(errors="replace").strip()
            raise errdefs.Unknown(f"{text}: exit status {rc}")
        return parse_start_response(out)

    async def delete(self, bundle: Bundle) -> Exit:
        """Run ``delete`` for ``bundle`` (a shim that is gone) and return the exit it reports.

        The bundle is left in place; the caller removes it.  Raises Unknown
        with the shim's stderr when the command fails or prints no valid
        DeleteResponse.  Cancelling it kills the command.
        """
        args = ["-id", bundle.id, "-bundle", bundle.path]
        if self.debug:
            args.append("-debug")
        args.append("delete")
        # Without the bundle directory (a half-created task) the command
        # still runs, from the state root, and reports what it could do.
        cwd = bundle.path if os.path.isdir(bundle.path) else os.path.dirname(bundle.path)
        if not os.path.isdir(cwd):
            cwd = "/"
        try:
            rc, out, err = await self._run(bundle.namespace, args, cwd, None, combined=False)
        except OSError as e:
            raise errdefs.Unknown(f"exec {self.path}: {e}") from None
        warnings = err.decode(errors="replace").strip()
        if rc != 0:
            raise errdefs.Unknown(f"{warnings}: exit status {rc}")
        if warnings:
            log.warning("cleanup warnings for %s/%s: %s", bundle.namespace, bundle.id, warnings)
        resp = shim_pb2.DeleteResponse()
        try:
            resp.ParseFromString(out)
        except message.DecodeError as e:
            raise errdefs.Unknown(f"shim delete printed no DeleteResponse: {e}") from None
        return Exit(
            pid=resp.pid,
            status=resp.exit_status,
            exited_at=resp.exited_at.ToDatetime(tzinfo=UTC),
        )
