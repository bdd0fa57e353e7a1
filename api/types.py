"""Contract types every process shares, free of gRPC and of any service.

Services (content, snapshotter, diff, tasks) and the daemon exchange these
plain values; each gRPC edge converts them to and from the wire messages.
The request headers that carry a namespace or a lease live here too, so the
daemon, the plugins and the shims' ttrpc path agree on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from google.protobuf import message

from api.namespaces import GRPC_HEADER as NAMESPACE_HEADER
from api.namespaces import TTRPC_HEADER as NAMESPACE_TTRPC_HEADER

__all__ = [
    "LEASE_HEADER",
    "NAMESPACE_HEADER",
    "NAMESPACE_TTRPC_HEADER",
    "Descriptor",
    "Mount",
    "Platform",
    "Publisher",
]

# The lease a request's new objects are held by (containerd's leases.Header).
LEASE_HEADER = "containerd-lease"


@dataclass(frozen=True)
class Mount:
    """One mount to perform, in order, to assemble a filesystem.

    The fields carry mount(8)'s meaning: ``type`` ("overlay", "bind"),
    ``source`` and ``options`` (e.g. ``("ro", "rbind")``).  ``target`` is a
    sub-path below the mount point; snapshotters leave it empty.
    """

    type: str
    source: str
    options: tuple[str, ...] = ()
    target: str = ""


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor (the four fields containerd keeps)."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Platform:
    """An OCI platform: what a plugin or an image runs on."""

    os: str
    architecture: str
    variant: str = ""


class Publisher(Protocol):
    """Where events go (the daemon's exchange, or a shim's forwarder)."""

    async def publish(self, namespace: str, event: message.Message, topic: str = "") -> None:
        """Publish ``event`` in ``namespace`` on ``topic`` (default: the event's own topic).

        Raises InvalidArgument for a bad namespace or topic, or an event with no topic.
        """
        ...
