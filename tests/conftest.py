"""What every test shares: async tests run on the loop berthd's processes run on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest

from services.harness import loop


@pytest.hookimpl(optionalhook=True)
def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """uvloop unless ``BERTHD_EVENT_LOOP=asyncio`` (services/harness/loop.py), so
    that the in-process tests cover the loop the daemon runs on."""
    make = loop.factory()
    return {"asyncio" if make is asyncio.new_event_loop else "uvloop": make}
