"""``berthd publish``: how a shim started with ``-publish-binary`` sends an event.

Such a shim runs ``<daemon> --address GRPC_ADDR publish --topic T
--namespace NS`` with the event on stdin as a marshalled
``google.protobuf.Any``; the command sends it to the daemon's gRPC Events
service (``Publish``) with the namespace in the request metadata, as
containerd's cmd/containerd/command/publish.go does.  Shims that speak ttrpc
to ``TTRPC_ADDRESS`` (the runc v2 shim) do not use this.
"""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf import any_pb2, message

from api import errdefs, errgrpc, identifiers
from api.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from api.namespaces import outgoing

__all__ = ["CONNECT_TIMEOUT", "publish_from_stdin"]

# containerd gives the dial two seconds.
CONNECT_TIMEOUT = 2.0


def _target(address: str) -> str:
    if address.startswith("unix://"):
        return address
    return "unix://" + address


async def publish_from_stdin(address: str, topic: str, namespace: str, data: bytes) -> None:
    """Publish the Any-encoded event ``data`` on ``topic`` in ``namespace``.

    Raises InvalidArgument for a missing topic, a bad namespace or bytes
    that are no Any, Unavailable when the daemon does not answer within
    CONNECT_TIMEOUT, and whatever class the daemon's Publish answered.
    """
    if not topic:
        raise errdefs.InvalidArgument("topic required to publish event")
    try:
        identifiers.validate(namespace)
    except errdefs.InvalidArgument as e:
        raise errdefs.InvalidArgument(f"namespace: {e.message}") from None
    event = any_pb2.Any()
    try:
        event.ParseFromString(data)
    except message.DecodeError as e:
        raise errdefs.InvalidArgument(f"event payload is not a protobuf Any: {e}") from None
    async with grpc.aio.insecure_channel(_target(address)) as channel:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await channel.channel_ready()
        except TimeoutError:
            raise errdefs.Unavailable(f"failed to dial {address!r}") from None
        stub = events_pb2_grpc.EventsStub(channel)
        with errgrpc.translate(f"publish to {address}"):
            await stub.Publish(
                events_pb2.PublishRequest(topic=topic, event=event),
                metadata=outgoing(namespace),
            )
