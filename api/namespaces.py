"""The namespace every containerd request carries in its metadata.

gRPC clients send it as the ``containerd-namespace`` header, ttrpc clients as
``containerd-namespace-ttrpc``; a servicer that needs one and finds none
answers FailedPrecondition, as containerd's ``namespaces.NamespaceRequired``.
"""

from __future__ import annotations

from collections.abc import Iterable

from api import identifiers
from api.errdefs import FailedPrecondition, InvalidArgument

GRPC_HEADER = "containerd-namespace"
TTRPC_HEADER = "containerd-namespace-ttrpc"
DEFAULT = "default"

Metadata = Iterable[tuple[str, str | bytes]]


def from_metadata(metadata: Metadata | None) -> str | None:
    """The namespace named in request metadata, validated; None when absent."""
    for key, value in metadata or ():
        if key.lower() in (GRPC_HEADER, TTRPC_HEADER):
            ns = value.decode() if isinstance(value, bytes) else value
            try:
                identifiers.validate(ns)
            except InvalidArgument as e:
                raise InvalidArgument(f"namespace validation: {e.message}") from None
            return ns
    return None


def required(metadata: Metadata | None) -> str:
    """The request's namespace; FailedPrecondition when the caller sent none."""
    ns = from_metadata(metadata)
    if ns is None:
        raise FailedPrecondition("namespace is required")
    return ns


def outgoing(namespace: str) -> tuple[tuple[str, str], ...]:
    """Metadata that carries ``namespace`` on an outgoing gRPC call."""
    return ((GRPC_HEADER, namespace),)
