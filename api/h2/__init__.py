"""gRPC over HTTP/2 on asyncio: berthd's server for its unix sockets (see ``server``)."""
