from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.metadata.server import MetaServer, meta_server
from tests.support import short_tmpdir


@pytest.fixture
async def ms() -> AsyncIterator[MetaServer]:
    with short_tmpdir("bm") as d:
        async with meta_server(d) as server:
            yield server
