"""Addresses as containerd and shims write them."""

from __future__ import annotations

import pytest

from api import errdefs
from api.ttrpc import address_to_path, shim_address_to_path


@pytest.mark.parametrize(
    ("address", "path"),
    [
        ("unix:///run/containerd/s/abc", "/run/containerd/s/abc"),
        ("/run/berthd/berthd.sock.ttrpc", "/run/berthd/berthd.sock.ttrpc"),
        ("relative.sock", "relative.sock"),
        ("@containerd-shim/x.sock", "\x00containerd-shim/x.sock"),
        ("unix://@name", "\x00name"),
        ("\x00name", "\x00name"),
    ],
)
def test_address_to_path(address: str, path: str) -> None:
    assert address_to_path(address) == path


@pytest.mark.parametrize(
    ("address", "path"),
    [
        # containerd 1.5+ shims
        ("unix:///run/containerd/s/0123abcd", "/run/containerd/s/0123abcd"),
        # containerd 1.4 shims: a bare path lives in the abstract namespace
        ("/containerd-shim/ns/id/shim.sock", "\x00/containerd-shim/ns/id/shim.sock"),
        ("@name", "\x00name"),
        ("\x00name", "\x00name"),
    ],
)
def test_shim_address_to_path(address: str, path: str) -> None:
    assert shim_address_to_path(address) == path


@pytest.mark.parametrize("address", ["", "unix://", "@", "\x00"])
def test_empty_addresses_are_invalid(address: str) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        address_to_path(address)
    with pytest.raises(errdefs.InvalidArgument):
        shim_address_to_path(address)
