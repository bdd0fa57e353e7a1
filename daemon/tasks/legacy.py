"""containerd's legacy runtime name, run on the runc v2 shim.

``io.containerd.runtime.v1.linux`` (runtime v1: ``containerd-shim`` and its
own shim API) was deprecated in containerd 1.4 and is gone in 2.0.  berthd
does not implement the old shim protocol: a container asking for that
runtime runs on ``containerd-shim-runc-v2``, with its
``containerd.linux.runc.RuncOptions`` translated into the v2 shim's
``containerd.runc.v1.Options`` (same runc, same state and cgroup settings).
"""

from __future__ import annotations

import logging

from api.containerd.runtime.linux.runctypes import runc_pb2 as legacy_pb2
from api.containerd.types.runc.options import oci_pb2
from services.tasks.types import AnyValue

log = logging.getLogger(__name__)

LEGACY_LINUX = "io.containerd.runtime.v1.linux"
RUNC_V2 = "io.containerd.runc.v2"
_RUNC_OPTIONS = "containerd.linux.runc.RuncOptions"
_V2_OPTIONS = "containerd.runc.v1.Options"


def translate(runtime: str, options: AnyValue | None) -> tuple[str, AnyValue | None]:
    """The runtime and runtime options to start a task with."""
    if runtime != LEGACY_LINUX:
        return runtime, options
    log.warning("runtime %s is deprecated; running it on %s", LEGACY_LINUX, RUNC_V2)
    if options is None or options.type_url.rsplit("/", 1)[-1] != _RUNC_OPTIONS:
        return RUNC_V2, options
    old = legacy_pb2.RuncOptions()
    old.ParseFromString(options.value)
    new = oci_pb2.Options(
        binary_name=old.runtime,
        root=old.runtime_root,
        criu_path=old.criu_path,
        systemd_cgroup=old.systemd_cgroup,
    )
    return RUNC_V2, AnyValue(_V2_OPTIONS, new.SerializeToString())
