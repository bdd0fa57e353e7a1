"""The content conformance suite through a real berthd process, whose content
store is the real content plugin process behind its proxy client: the path
``ctr`` takes (daemon metadata layer -> proxy client -> plugin -> local store).

The tests about blobs of another namespace also run under the "isolated"
content sharing policy, on a second daemon.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from services.harness.server import CHANNEL_OPTIONS
from tests.conformance import content_suite
from tests.conformance.content_suite import *  # noqa: F403
from tests.conformance.content_suite import CROSS_NAMESPACE, ContentTarget, new_namespace
from tests.conformance.leases import temporary_lease
from tests.metadata.berthd import backend_toml, metadata_berthd
from tests.metadata.conftest import BACKEND_PARAMS
from tests.support import need_root, short_tmpdir
from tests.support.berthd import Berthd

pytestmark = pytest.mark.root

ISOLATED = '  content_sharing_policy = "isolated"\n'


@pytest.fixture(scope="module", params=BACKEND_PARAMS)
def berthd(request: pytest.FixtureRequest) -> Iterator[Berthd]:
    need_root()
    extra = backend_toml(request.param, request, "conf")
    with short_tmpdir("bcb") as d, metadata_berthd(d, extra) as b:
        yield b


@pytest.fixture
async def content_target(berthd: Berthd) -> AsyncIterator[ContentTarget]:
    async with grpc.aio.insecure_channel(f"unix://{berthd.address}", options=CHANNEL_OPTIONS) as ch:
        ns = new_namespace()
        async with temporary_lease(ch, ns) as lease:
            yield ContentTarget(ch, namespace=ns, metadata=(lease,))


@pytest.fixture(scope="module", params=BACKEND_PARAMS)
def isolated_berthd(request: pytest.FixtureRequest) -> Iterator[Berthd]:
    need_root()
    extra = backend_toml(request.param, request, "iso", ISOLATED)
    with short_tmpdir("bci") as d, metadata_berthd(d, extra) as b:
        yield b


@pytest.mark.parametrize("name", CROSS_NAMESPACE)
async def test_isolated_policy(name: str, isolated_berthd: Berthd) -> None:
    async with grpc.aio.insecure_channel(
        f"unix://{isolated_berthd.address}", options=CHANNEL_OPTIONS
    ) as ch:
        ns = new_namespace()
        async with temporary_lease(ch, ns) as lease:
            target = ContentTarget(ch, namespace=ns, metadata=(lease,), shared=False)
            await getattr(content_suite, name)(target)
