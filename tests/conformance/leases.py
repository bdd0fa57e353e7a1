"""A lease for the duration of a test, so a collecting target keeps its blobs."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import grpc

from api import namespaces
from api.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc
from api.types import LEASE_HEADER


@contextlib.asynccontextmanager
async def temporary_lease(
    channel: grpc.aio.Channel, namespace: str
) -> AsyncIterator[tuple[str, str]]:
    """Yields the ``containerd-lease`` metadata entry; deletes the lease after."""
    stub = leases_pb2_grpc.LeasesStub(channel)
    md = namespaces.outgoing(namespace)
    lease_id = f"conformance-{uuid.uuid4().hex[:12]}"
    await stub.Create(leases_pb2.CreateRequest(id=lease_id), metadata=md)
    try:
        yield (LEASE_HEADER, lease_id)
    finally:
        await stub.Delete(leases_pb2.DeleteRequest(id=lease_id), metadata=md)
