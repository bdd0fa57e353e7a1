"""The connection to a shim: what the task client needs of a ttrpc client.

``dial`` opens one from the shim's bootstrap parameters with the project's
ttrpc client (``api.ttrpc.client``); an address without ``unix://`` is an
abstract socket, as containerd's shim dialer reads it.  Shims built on containerd 1.7 may ask
for gRPC instead (``"protocol": "grpc"``); berthd does not speak that to
shims yet and says so (NotImplemented).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, TypeVar

from google.protobuf import message

from api import errdefs
from api.ttrpc.address import shim_address_to_path
from api.ttrpc.client import Client
from services.tasks.command import BootstrapParams

__all__ = ["Connection", "dial"]

M = TypeVar("M", bound=message.Message)


class Connection(Protocol):
    """A client connection on which unary calls are made.

    ``call`` raises the errdefs class the server answered with, and
    Unavailable once the connection is lost; ``on_close`` callbacks run once,
    on the event loop, when the connection is lost or closed.
    """

    async def call(
        self,
        service: str,
        method: str,
        request: message.Message,
        response_type: type[M],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the ttrpc client's own signature
        metadata: Mapping[str, str] | None = None,
    ) -> M: ...

    def on_close(self, callback: Callable[[], None]) -> None: ...

    async def close(self) -> None: ...

    @property
    def closed(self) -> bool: ...


async def dial(params: BootstrapParams) -> Connection:
    """Connect to the shim described by ``params``.

    Raises NotImplemented for a protocol other than ttrpc, Unavailable when
    nothing accepts the connection.  Callers bound it with asyncio.timeout.
    """
    if params.protocol != "ttrpc":
        raise errdefs.NotImplemented(f"unexpected shim protocol: {params.protocol!r}")
    client: Connection = await Client.connect(shim_address_to_path(params.address))
    return client
