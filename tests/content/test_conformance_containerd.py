"""The content conformance suite against real containerd's own content service.

This is the reference run: what passes here is containerd's behaviour, under
its default content sharing policy ("shared") and, for the tests about blobs of
another namespace, under "isolated" too.
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
from tests.support import short_tmpdir
from tests.support.containerd import Containerd, need_containerd

pytestmark = [pytest.mark.containerd, pytest.mark.root]


@pytest.fixture(scope="module")
def containerd() -> Iterator[Containerd]:
    need_containerd()
    with short_tmpdir("bcc") as d, Containerd(d) as cd:
        yield cd


@pytest.fixture
async def content_target(containerd: Containerd) -> AsyncIterator[ContentTarget]:
    async with grpc.aio.insecure_channel(
        f"unix://{containerd.address}", options=CHANNEL_OPTIONS
    ) as ch:
        ns = new_namespace()
        async with temporary_lease(ch, ns) as lease:
            yield ContentTarget(ch, namespace=ns, metadata=(lease,), strict=False)


# containerd's metadata plugin option; "shared" is its default.
ISOLATED_TOML = """
[plugins."io.containerd.metadata.v1.bolt"]
  content_sharing_policy = "isolated"
"""


@pytest.fixture(scope="module")
def isolated_containerd() -> Iterator[Containerd]:
    need_containerd()
    with short_tmpdir("bci") as d, Containerd(d, extra_toml=ISOLATED_TOML) as cd:
        yield cd


@pytest.mark.parametrize("name", CROSS_NAMESPACE)
async def test_isolated_policy(name: str, isolated_containerd: Containerd) -> None:
    async with grpc.aio.insecure_channel(
        f"unix://{isolated_containerd.address}", options=CHANNEL_OPTIONS
    ) as ch:
        ns = new_namespace()
        async with temporary_lease(ch, ns) as lease:
            target = ContentTarget(ch, namespace=ns, metadata=(lease,), strict=False, shared=False)
            await getattr(content_suite, name)(target)
