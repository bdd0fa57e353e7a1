"""deploy/config/peer.toml: imported by a node's config, it configures the peer plugin."""

from __future__ import annotations

from pathlib import Path

from daemon import config as configuration
from daemon.peer.plugin import PEER, PEER_ID
from daemon.peer.settings import PeerConfig, resolve
from tests.peer.certs import NodeCert
from tests.support import REPO

PEER_TOML = REPO / "deploy" / "config" / "peer.toml"


def test_the_example_imports_and_resolves(tmp_path: Path, node_certs: dict[str, NodeCert]) -> None:
    a = node_certs["a"]
    text = PEER_TOML.read_text()
    for shipped, ours in (
        ("/etc/berthd/pki/ca.pem", a.ca),
        ("/etc/berthd/pki/node.pem", a.cert),
        ("/etc/berthd/pki/node-key.pem", a.key),
    ):
        assert shipped in text
        text = text.replace(shipped, str(ours))
    (tmp_path / "peer.toml").write_text(text)
    main = tmp_path / "config.toml"
    main.write_text(f'version = 2\nroot = "{tmp_path / "root"}"\nstate = "{tmp_path / "run"}"\n'
                    'imports = ["peer.toml"]\n')  # fmt: skip
    cfg = configuration.load(str(main))
    uri = f"{PEER}.{PEER_ID}"
    section = cfg.plugin_section(uri)
    assert section is not None
    peer = section.decode(PeerConfig, uri)
    settings = resolve(peer)
    assert settings.bind == "0.0.0.0:7443"
    assert settings.advertise(7443) == "10.0.0.11:7443"
    assert settings.tls is not None and settings.tls.cert == a.cert.read_bytes()
