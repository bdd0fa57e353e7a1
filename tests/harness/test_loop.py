"""Which loop berthd's processes run on: uvloop unless told otherwise."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from services.harness import loop


async def _kind() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BERTHD_EVENT_LOOP", raising=False)
    assert loop.run(_kind()) is uvloop.Loop
    monkeypatch.setenv("BERTHD_EVENT_LOOP", "")
    assert loop.run(_kind()) is uvloop.Loop


def test_asyncio_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTHD_EVENT_LOOP", "asyncio")
    kind = loop.run(_kind())
    assert kind is not uvloop.Loop and issubclass(kind, asyncio.BaseEventLoop)
    monkeypatch.setenv("BERTHD_EVENT_LOOP", "uvloop")
    assert loop.run(_kind()) is uvloop.Loop


def test_an_unknown_loop_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTHD_EVENT_LOOP", "uvlop")
    with pytest.raises(ValueError, match=r"BERTHD_EVENT_LOOP='uvlop': not one of uvloop, asyncio"):
        loop.run(_kind())
