"""berthd processes with the peer plugin, and what the tests ask them."""

from __future__ import annotations

import json
from pathlib import Path

import grpc

from api.containerd.services.introspection.v1 import introspection_pb2, introspection_pb2_grpc
from tests.metadata.berthd import metadata_berthd
from tests.peer.certs import NodeCert
from tests.support.berthd import Berthd

PEER_URI = "io.berthd.content.v1.peer"


def peer_toml(cert: NodeCert | None, address: str = "127.0.0.1:0") -> str:
    tls = cert.toml() if cert is not None else ""
    return f'[plugins."{PEER_URI}"]\npeer_address = {json.dumps(address)}\n{tls}'


def peer_berthd(d: Path, cert: NodeCert | None, extra_toml: str = "") -> Berthd:
    return metadata_berthd(d, peer_toml(cert) + extra_toml)


def plugin_exports(b: Berthd, uri: str = PEER_URI) -> dict[str, str]:
    """The exports of plugin ``uri`` (its init error raised as AssertionError)."""
    ptype, _, pid = uri.rpartition(".")
    with b.channel() as ch:
        stub = introspection_pb2_grpc.IntrospectionStub(ch)
        resp = stub.Plugins(introspection_pb2.PluginsRequest(filters=[f"type=={ptype}"]))
    for p in resp.plugins:
        if p.id == pid:
            assert not p.HasField("init_err"), p.init_err.message
            return dict(p.exports)
    raise AssertionError(f"no plugin {uri}")


def peer_address(b: Berthd) -> str:
    return plugin_exports(b)["address"]


def secure_channel(address: str, cert: NodeCert) -> grpc.Channel:
    ca, crt, key = cert.pem()
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(ca, key, crt))
