"""containerd's ttrpc protocol: an asyncio client and server (no gRPC involved).

``Client`` makes calls to a ttrpc server (a shim's task API); ``Server``
serves ttrpc services (the events intake shims forward to).  Errors cross in
``api.ttrpc.status`` only, as the typed errors of ``api.errdefs``.
"""

from api.ttrpc.address import address_to_path, shim_address_to_path
from api.ttrpc.client import Client, ClientStream, Metadata
from api.ttrpc.framing import DEFAULT_MAX
from api.ttrpc.server import Server
from api.ttrpc.service import Context, Method, ServerStream, StreamMethod
from api.ttrpc.status import ConnectionClosed

__all__ = [
    "DEFAULT_MAX",
    "Client",
    "ClientStream",
    "ConnectionClosed",
    "Context",
    "Metadata",
    "Method",
    "Server",
    "ServerStream",
    "StreamMethod",
    "address_to_path",
    "shim_address_to_path",
]
