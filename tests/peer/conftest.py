from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peer.certs import CertAuthority, NodeCert
from tests.support import short_tmpdir


@pytest.fixture(scope="session")
def pki() -> Iterator[Path]:
    with short_tmpdir("bpki") as d:
        yield d


@pytest.fixture(scope="session")
def ca(pki: Path) -> CertAuthority:
    return CertAuthority(pki / "cluster")


@pytest.fixture(scope="session")
def rogue_ca(pki: Path) -> CertAuthority:
    """Another CA: its certificates are well formed but not the cluster's."""
    return CertAuthority(pki / "rogue", "rogue-ca")


@pytest.fixture(scope="session")
def node_certs(ca: CertAuthority) -> dict[str, NodeCert]:
    return {name: ca.issue(name) for name in ("a", "b", "c")}
