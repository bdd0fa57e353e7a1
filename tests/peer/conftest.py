from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peer.certs import CertAuthority, NodeCert
from tests.support import short_tmpdir
from tests.support.etcd import EtcdCluster, need_etcd


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


@pytest.fixture(scope="session")
def etcd_endpoints() -> Iterator[list[str]]:
    """One single-member etcd for the session; tests keep to their own prefixes."""
    need_etcd()
    with short_tmpdir("petcd") as d:
        cluster = EtcdCluster(d, 1)
        try:
            yield cluster.start().endpoints
        finally:
            cluster.stop()
