from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.metadata.server import MetaServer, meta_server
from tests.metadata.stores import StoreMaker
from tests.support import short_tmpdir
from tests.support.etcd import EtcdCluster, need_etcd

BACKEND_PARAMS = ["sqlite", pytest.param("etcd", marks=pytest.mark.etcd)]


@pytest.fixture(scope="session")
def etcd_endpoints() -> Iterator[list[str]]:
    """One single-member etcd for the session; tests keep to their own prefixes."""
    need_etcd()
    with short_tmpdir("etcd") as d:
        cluster = EtcdCluster(d, 1)
        try:
            yield cluster.start().endpoints
        finally:
            cluster.stop()


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def maker(backend: str, root: Path, request: pytest.FixtureRequest) -> StoreMaker:
    if backend == "etcd":
        return StoreMaker(backend, root, request.getfixturevalue("etcd_endpoints"))
    return StoreMaker(backend, root)


@pytest.fixture
def stores(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> StoreMaker:
    return maker(backend, tmp_path, request)


@pytest.fixture
async def ms(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[MetaServer]:
    with short_tmpdir("bm") as d:
        store = await maker(backend, d, request).open()
        async with meta_server(d, store=store) as server:
            yield server
