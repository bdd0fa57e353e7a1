"""The content conformance suite against the namespaced Content service.

Every suite test runs once on its own and once in two namespaces at the same
time on one server, each under a lease (the daemon collects garbage as
containerd does, so unleased, unreferenced blobs may go at any deletion);
the tests about blobs of another namespace also run under the "isolated"
content sharing policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.conformance import content_suite
from tests.conformance.content_suite import *  # noqa: F403
from tests.conformance.content_suite import CROSS_NAMESPACE, ContentTarget, new_namespace
from tests.conformance.leases import temporary_lease
from tests.metadata.server import MetaServer, meta_server
from tests.support import short_tmpdir

SUITE = [name for name in content_suite.__all__ if name.startswith("test_")]


@pytest.fixture
async def content_target(ms: MetaServer) -> AsyncIterator[ContentTarget]:
    ns = new_namespace()
    async with temporary_lease(ms.channel, ns) as lease:
        yield ContentTarget(ms.channel, namespace=ns, metadata=(lease,))


@pytest.mark.parametrize("name", SUITE)
async def test_suite_in_two_namespaces_at_once(name: str, ms: MetaServer) -> None:
    test = getattr(content_suite, name)
    a, b = new_namespace(), new_namespace()
    async with temporary_lease(ms.channel, a) as la, temporary_lease(ms.channel, b) as lb:
        await asyncio.gather(
            test(ContentTarget(ms.channel, namespace=a, metadata=(la,))),
            test(ContentTarget(ms.channel, namespace=b, metadata=(lb,))),
        )


@pytest.mark.parametrize("name", CROSS_NAMESPACE)
async def test_isolated_policy(name: str) -> None:
    with short_tmpdir("bmi") as d:
        async with meta_server(d, shared_content=False) as ms:
            ns = new_namespace()
            async with temporary_lease(ms.channel, ns) as lease:
                target = ContentTarget(ms.channel, namespace=ns, metadata=(lease,), shared=False)
                await getattr(content_suite, name)(target)
