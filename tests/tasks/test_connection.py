"""Dialing a shim from its bootstrap parameters."""

from __future__ import annotations

import pytest

from api import errdefs
from services.tasks.command import BootstrapParams
from services.tasks.connection import dial
from tests.support import short_tmpdir


async def test_grpc_shims_are_not_supported_yet() -> None:
    with pytest.raises(errdefs.NotImplemented, match="grpc"):
        await dial(BootstrapParams(2, "unix:///run/x.sock", "grpc"))


async def test_nothing_listening_is_unavailable() -> None:
    with short_tmpdir("bdial") as d, pytest.raises(errdefs.Unavailable):
        await dial(BootstrapParams(0, f"unix://{d}/nobody.sock", "ttrpc"))


async def test_address_without_scheme_is_abstract() -> None:
    # containerd's shim dialer: no unix:// means the abstract namespace, so
    # an existing file of that name is not what gets dialed.
    with short_tmpdir("bdial") as d:
        (d / "file.sock").touch()
        with pytest.raises(errdefs.Unavailable, match="@"):
            await dial(BootstrapParams(0, f"{d}/file.sock", "ttrpc"))
