"""The peer plugin's settings: what is refused before anything listens, and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from api import errdefs
from daemon.peer.settings import PeerConfig, resolve, split_host_port
from tests.peer.certs import CertAuthority, NodeCert


def test_loopback_without_tls_is_plain_tcp() -> None:
    s = resolve(PeerConfig(peer_address="127.0.0.1:0"))
    assert s.tls is None
    assert s.bind == "127.0.0.1:0"
    assert s.advertise(7001) == "127.0.0.1:7001"
    assert resolve(PeerConfig(peer_address="[::1]:7000")).advertise(7000) == "[::1]:7000"


@pytest.mark.parametrize(
    ("address", "advertise", "key"),
    [
        ("10.0.0.1:7000", "", "peer_address"),
        ("127.0.0.1:7000", "10.0.0.1:7000", "advertise_address"),
        ("0.0.0.0:7000", "", "advertise_address"),
        ("127.0.0.1:7000", "0.0.0.0:7000", "advertise_address"),
        ("127.0.0.1", "", "peer_address"),
        ("127.0.0.1:99999", "", "peer_address"),
        ("::1:7000", "", "peer_address"),
    ],
)
def test_refused_settings_name_the_key(address: str, advertise: str, key: str) -> None:
    cfg = PeerConfig(peer_address=address, advertise_address=advertise)
    with pytest.raises(errdefs.InvalidArgument, match=rf"io.berthd.content.v1.peer\"\.{key}:"):
        resolve(cfg)


def test_non_loopback_needs_mutual_tls(tmp_path: Path) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="peers need mutual TLS"):
        resolve(PeerConfig(peer_address="192.0.2.7:7000"))


def test_tls_files_are_checked(
    node_certs: dict[str, NodeCert], rogue_ca: CertAuthority, tmp_path: Path
) -> None:
    a = node_certs["a"]
    ok = resolve(
        PeerConfig(
            peer_address="0.0.0.0:7000",
            advertise_address="192.0.2.7:7000",
            ca=str(a.ca),
            cert=str(a.cert),
            key=str(a.key),
        )
    )
    assert ok.tls is not None and ok.tls.ca == a.ca.read_bytes()
    assert ok.advertise(7000) == "192.0.2.7:7000"
    base = {"peer_address": "192.0.2.7:7000", "ca": str(a.ca), "cert": str(a.cert)}
    with pytest.raises(errdefs.InvalidArgument, match=r"\.key: mutual TLS needs ca, cert and key"):
        resolve(PeerConfig(**base))
    with pytest.raises(errdefs.InvalidArgument, match=r"\.key: cannot read"):
        resolve(PeerConfig(**base, key=str(tmp_path / "missing.pem")))
    other = rogue_ca.issue("other")
    with pytest.raises(errdefs.InvalidArgument, match=r"\.key: .* is not the private key of"):
        resolve(PeerConfig(**base, key=str(other.key)))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(errdefs.InvalidArgument, match=r"\.ca: .* holds no PEM CA certificate"):
        resolve(PeerConfig(**{**base, "ca": str(junk)}, key=str(a.key)))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("h:1", ("h", 1)), ("[fe80::1]:80", ("fe80::1", 80)), ("localhost:0", ("localhost", 0))],
)
def test_split_host_port(text: str, expected: tuple[str, int]) -> None:
    assert split_host_port(text) == expected
