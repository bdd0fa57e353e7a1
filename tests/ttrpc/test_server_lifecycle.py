"""The server's socket handling, graceful close and registration rules."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from api import errdefs
from api.sockets import AddressInUse
from api.ttrpc import Client, ConnectionClosed, Method, Server, shim_address_to_path
from api.ttrpc.framing import REQUEST, RESPONSE
from api.ttrpc.request_pb2 import Request, Response
from tests.support import need_root
from tests.ttrpc.conftest import SERVICE, EchoService, RawPeer, StringValue


def new_server(service: EchoService, **kwargs: bool | int) -> Server:
    server = Server(**kwargs)  # type: ignore[arg-type]
    server.register(SERVICE, service.methods())
    return server


async def echo(path: str, value: str = "v") -> str:
    client = await Client.connect(path)
    try:
        out = await client.call(SERVICE, "Echo", StringValue(value=value), StringValue)
        return out.value
    finally:
        await client.close()


async def test_stale_socket_is_replaced(tmp: Path, service: EchoService) -> None:
    path = str(tmp / "stale.sock")
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(path)  # bound, never listening: what a crashed server leaves
    server = new_server(service)
    await server.serve_unix(path)
    try:
        assert await echo(path) == "v"
    finally:
        await server.close()


async def test_live_socket_is_refused(tmp: Path, service: EchoService) -> None:
    path = str(tmp / "live.sock")
    first = new_server(service)
    await first.serve_unix(path)
    try:
        with pytest.raises(AddressInUse, match="another process is serving"):
            await new_server(service).serve_unix(path)
        assert await echo(path) == "v"  # the first server is untouched
    finally:
        await first.close()


async def test_non_socket_is_refused(tmp: Path, service: EchoService) -> None:
    path = tmp / "file.sock"
    path.write_text("precious")
    with pytest.raises(AddressInUse, match="not a socket"):
        await new_server(service).serve_unix(str(path))
    assert path.read_text() == "precious"


async def test_socket_mode_and_directory(tmp: Path, service: EchoService) -> None:
    path = tmp / "sub" / "dir" / "m.sock"
    server = new_server(service)
    await server.serve_unix(str(path), mode=0o600, dir_mode=0o750)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o750
    finally:
        await server.close()
    assert not path.exists(), "close removes the socket it created"


@pytest.mark.root
async def test_socket_owner(tmp: Path, service: EchoService) -> None:
    need_root()
    path = tmp / "o.sock"
    server = new_server(service)
    await server.serve_unix(str(path), uid=65534, gid=65534)
    try:
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (65534, 65534)
    finally:
        await server.close()


async def test_abstract_socket(service: EchoService) -> None:
    name = f"berthd-ttrpc-test-{uuid.uuid4().hex}"
    server = new_server(service)
    await server.serve_unix("@" + name)
    try:
        assert await echo("\x00" + name, "a") == "a"
        assert await echo(f"unix://@{name}", "b") == "b"
    finally:
        await server.close()
    with pytest.raises(errdefs.Unavailable):
        await echo("@" + name)


async def test_legacy_abstract_shim_address(service: EchoService) -> None:
    """A containerd 1.4 shim printed a bare path and listened on "\\x00" + it, which Go
    before 1.20 binds with a trailing NUL; the client finds it either way."""
    bare = f"/containerd-shim/ns/{uuid.uuid4().hex}/shim.sock"
    server = new_server(service)
    await server.serve_unix("@" + bare + "\x00")
    try:
        assert await echo(shim_address_to_path(bare), "legacy") == "legacy"
    finally:
        await server.close()


async def test_close_lets_calls_in_flight_finish(tmp: Path, service: EchoService) -> None:
    path = str(tmp / "g.sock")
    server = new_server(service)
    await server.serve_unix(path)
    client = await Client.connect(path)
    call = asyncio.create_task(client.call(SERVICE, "Wait", StringValue(value="g"), StringValue))
    await asyncio.wait_for(service.started_event("g").wait(), 30)
    closing = asyncio.create_task(server.close(grace=60))
    await asyncio.sleep(0)
    assert not os.path.exists(path), "no new connections once closing"
    with pytest.raises(errdefs.Unavailable):
        await Client.connect(path)
    service.gate("g").set()
    out = await asyncio.wait_for(call, 30)
    assert out.value == "g"
    await asyncio.wait_for(closing, 30)
    assert not service.cancelled_event("g").is_set()
    await client.close()


async def test_close_cancels_calls_after_the_grace(tmp: Path, service: EchoService) -> None:
    path = str(tmp / "c.sock")
    server = new_server(service)
    await server.serve_unix(path)
    client = await Client.connect(path)
    call = asyncio.create_task(client.call(SERVICE, "Wait", StringValue(value="s"), StringValue))
    await asyncio.wait_for(service.started_event("s").wait(), 30)
    await asyncio.wait_for(server.close(grace=0.05), 30)
    assert service.cancelled_event("s").is_set()
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(call, 30)
    await client.close()
    await server.close()  # idempotent
    with pytest.raises(errdefs.FailedPrecondition):
        await server.serve_unix(path)


async def test_idle_connections_close_at_once(tmp: Path, service: EchoService) -> None:
    path = str(tmp / "i.sock")
    server = new_server(service)
    await server.serve_unix(path)
    client = await Client.connect(path)
    closed = asyncio.Event()
    client.on_close(closed.set)
    await asyncio.wait_for(server.close(grace=60), 30)
    await asyncio.wait_for(closed.wait(), 30)
    await client.close()


def test_registration_rules(service: EchoService) -> None:
    server = Server()
    server.register(SERVICE, service.methods())
    with pytest.raises(errdefs.AlreadyExists):
        server.register(SERVICE, {})
    with pytest.raises(errdefs.InvalidArgument, match="Bad"):
        server.register("other", {"Bad": service.echo})  # type: ignore[dict-item]
    with pytest.raises(errdefs.InvalidArgument):
        Server(max_message_size=0)
    assert isinstance(service.methods()["Echo"], Method)


@contextlib.contextmanager
def effective_ids(uid: int, gid: int) -> Iterator[None]:
    os.setegid(gid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.mark.root
async def test_require_same_user(tmp: Path, service: EchoService) -> None:
    """As containerd's ttrpc socket: a peer with other credentials is dropped unanswered."""
    need_root()
    os.chmod(tmp, 0o755)
    path = str(tmp / "u.sock")
    server = new_server(service, require_same_user=True)
    await server.serve_unix(path, mode=0o666)
    try:
        assert await echo(path) == "v"  # same user: served
        stranger = socket.socket(socket.AF_UNIX)
        with effective_ids(65534, 65534):
            stranger.connect(path)  # SO_PEERCRED records the ids in effect here
        reader, writer = await asyncio.open_unix_connection(sock=stranger)
        peer = RawPeer(reader, writer)
        req = Request(service=SERVICE, method="Echo").SerializeToString()
        with contextlib.suppress(ConnectionError):
            await peer.send(1, REQUEST, 0, req)
        try:
            dropped = await peer.at_eof()
        except ConnectionResetError:
            dropped = True
        assert dropped
        await peer.close()
        assert not service.contexts[1:], "the stranger's call never reached a handler"
    finally:
        await server.close()


async def test_server_answers_unary_on_plain_socket(tmp: Path, service: EchoService) -> None:
    """A ttrpc 1.1 client (no flags at all) is served as a unary call."""
    path = str(tmp / "p.sock")
    server = new_server(service)
    await server.serve_unix(path)
    try:
        peer = await RawPeer.connect(path)
        payload = StringValue(value="old").SerializeToString()
        req = Request(service=SERVICE, method="Echo", payload=payload).SerializeToString()
        await peer.send(1, REQUEST, 0, req)
        sid, mtype, flags, data = await peer.recv()
        assert (sid, mtype, flags) == (1, RESPONSE, 0)
        assert StringValue.FromString(Response.FromString(data).payload).value == "old"
        await peer.close()
    finally:
        await server.close()
