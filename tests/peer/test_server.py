"""The peer server: Info and Read of the node's store over mutual TLS, nothing else."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from api import errdefs, errgrpc
from api.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from daemon.peer.client import PeerClients
from daemon.peer.settings import TLSFiles
from tests.peer.certs import CertAuthority, NodeCert
from tests.peer.support import Holder, blob, holder, put


def tls(cert: NodeCert) -> TLSFiles:
    return TLSFiles(*cert.pem())


@pytest.fixture
async def node_a(tmp_path: Path, node_certs: dict[str, NodeCert]) -> AsyncIterator[Holder]:
    async with holder(tmp_path / "a", node_certs["a"]) as h:
        yield h


async def test_a_peer_with_the_cluster_certificate_reads(
    node_a: Holder, node_certs: dict[str, NodeCert]
) -> None:
    data, dgst = blob(3 << 20)
    await put(node_a.store, data)
    clients = PeerClients(tls(node_certs["b"]))
    try:
        peer = clients.store(node_a.address)
        assert (await peer.info(dgst)).size == len(data)
        async with await peer.reader(dgst) as r:
            assert b"".join([c async for c in r.chunks()]) == data
            assert b"".join([c async for c in r.chunks(1 << 20)]) == data[1 << 20 :]
        with pytest.raises(errdefs.NotFound):
            await peer.info("sha256:" + "0" * 64)
        assert node_a.served.total == len(data) + len(data) - (1 << 20)
    finally:
        await clients.close()


async def _refused(channel: grpc.aio.Channel) -> grpc.aio.AioRpcError:
    stub = content_pb2_grpc.ContentStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Info(content_pb2.InfoRequest(digest="sha256:" + "0" * 64), timeout=10)
    return info.value


async def test_a_peer_without_a_client_certificate_is_refused(
    node_a: Holder, node_certs: dict[str, NodeCert]
) -> None:
    creds = grpc.ssl_channel_credentials(node_certs["b"].ca.read_bytes())  # trusts, no cert
    async with grpc.aio.secure_channel(node_a.address, creds) as ch:
        err = await _refused(ch)
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert node_a.served.total == 0


async def test_a_certificate_from_another_ca_is_refused(
    node_a: Holder, node_certs: dict[str, NodeCert], rogue_ca: CertAuthority
) -> None:
    rogue = rogue_ca.issue("intruder")
    creds = grpc.ssl_channel_credentials(
        node_certs["b"].ca.read_bytes(), rogue.key.read_bytes(), rogue.cert.read_bytes()
    )
    async with grpc.aio.secure_channel(node_a.address, creds) as ch:
        err = await _refused(ch)
    assert err.code() == grpc.StatusCode.UNAVAILABLE


async def test_plain_tcp_is_refused_by_a_tls_port(node_a: Holder) -> None:
    async with grpc.aio.insecure_channel(node_a.address) as ch:
        err = await _refused(ch)
    assert err.code() == grpc.StatusCode.UNAVAILABLE


async def test_everything_but_info_and_read_is_refused(
    node_a: Holder, node_certs: dict[str, NodeCert]
) -> None:
    data, dgst = blob(1000)
    await put(node_a.store, data)
    ca, cert, key = node_certs["b"].pem()
    creds = grpc.ssl_channel_credentials(ca, key, cert)
    async with grpc.aio.secure_channel(node_a.address, creds) as ch:
        stub = content_pb2_grpc.ContentStub(ch)
        # A forged Write: a whole blob in one stream, committed.
        _, other = blob(10)
        reqs = [
            content_pb2.WriteContentRequest(
                action=content_pb2.COMMIT, ref="forged", total=10, expected=other, data=b"x" * 10
            )
        ]
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in stub.Write(iter(reqs)):
                pass
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "read-only" in (info.value.details() or "")
        calls: dict[str, tuple[Any, Any]] = {
            "Delete": (stub.Delete, content_pb2.DeleteContentRequest(digest=dgst)),
            "Update": (
                stub.Update,
                content_pb2.UpdateRequest(info=content_pb2.Info(digest=dgst, labels={"k": "v"})),
            ),
            "Abort": (stub.Abort, content_pb2.AbortRequest(ref="put")),
        }
        for name, (call, req) in calls.items():
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(req)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, name
        unoffered: list[tuple[Any, Any]] = [
            (stub.Status, content_pb2.StatusRequest(ref="put")),
            (stub.ListStatuses, content_pb2.ListStatusesRequest()),
        ]
        for call, req in unoffered:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(req)
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in stub.List(content_pb2.ListContentRequest()):
                pass
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # Nothing changed: the blob and its labels are as they were, nothing forged exists.
    assert (await node_a.store.info(dgst)).labels == {}
    with pytest.raises(errdefs.NotFound):
        await node_a.store.info(other)
    assert await node_a.store.list_statuses() == []


async def test_plain_tcp_on_loopback_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data, dgst = blob(5000)
    with caplog.at_level(logging.WARNING, logger="daemon.peer.server"):
        async with holder(tmp_path / "p", None) as h:
            await put(h.store, data)
            clients = PeerClients(None)
            try:
                with errgrpc.translate():
                    assert (await clients.store(h.address).info(dgst)).size == 5000
            finally:
                await clients.close()
    assert any("plain TCP" in r.getMessage() for r in caplog.records)


def test_a_node_without_tls_dials_loopback_only() -> None:
    clients = PeerClients(None)
    with pytest.raises(errdefs.PermissionDenied, match="not a loopback address"):
        clients.store("192.0.2.1:7000")
    with pytest.raises(errdefs.InvalidArgument):
        clients.store("nonsense")
