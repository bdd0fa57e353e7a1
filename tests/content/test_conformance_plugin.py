"""The content conformance suite against our plugin process, over its socket."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from services.harness.server import CHANNEL_OPTIONS
from tests.conformance.content_suite import *  # noqa: F403
from tests.conformance.content_suite import ContentTarget, new_namespace
from tests.content.plugin import ContentPlugin, running_plugin
from tests.support import short_tmpdir


@pytest.fixture(scope="module")
def plugin() -> Iterator[ContentPlugin]:
    with short_tmpdir("bc") as d, running_plugin(d) as p:
        yield p


@pytest.fixture
async def content_target(plugin: ContentPlugin) -> AsyncIterator[ContentTarget]:
    async with grpc.aio.insecure_channel(f"unix://{plugin.address}", options=CHANNEL_OPTIONS) as ch:
        # containerd forwards its caller's namespace, or none: both must work.
        yield ContentTarget(ch, namespace=new_namespace(), namespaced=False)


@pytest.fixture
async def no_namespace_target(plugin: ContentPlugin) -> AsyncIterator[ContentTarget]:
    async with grpc.aio.insecure_channel(f"unix://{plugin.address}", options=CHANNEL_OPTIONS) as ch:
        yield ContentTarget(ch, namespace=None, namespaced=False)


async def test_suite_without_namespace_header(no_namespace_target: ContentTarget) -> None:
    from tests.conformance import content_suite

    await content_suite.test_single_write(no_namespace_target)
    await content_suite.test_resume_after_stream_ends(no_namespace_target)
    await content_suite.test_list_statuses_filters(no_namespace_target)
