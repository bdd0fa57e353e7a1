"""Addresses as containerd and its shims write them, turned into socket paths.

A path that starts with NUL names a Linux abstract socket (no file); Python's
socket module takes it as is.
"""

from __future__ import annotations

from api import errdefs

UNIX_SCHEME = "unix://"
ABSTRACT_PREFIX = "\x00"


def address_to_path(address: str) -> str:
    """The socket path for ``address``.

    ``unix:///run/x.sock`` and ``/run/x.sock`` name the file; ``@name`` and
    ``\\x00name`` (also after ``unix://``) name the abstract socket ``name``,
    as Go's net package reads a leading ``@``.
    """
    path = address.removeprefix(UNIX_SCHEME)
    if path.startswith("@"):
        path = ABSTRACT_PREFIX + path[1:]
    if not path or path == ABSTRACT_PREFIX:
        raise errdefs.InvalidArgument(f"ttrpc address {address!r} names no socket")
    return path


def shim_address_to_path(address: str) -> str:
    """The socket path for an address a shim printed or wrote to its ``address`` file.

    containerd's shim rule (runtime/v2/shim/util_unix.go, ``socket.path``):
    ``unix://`` names a file; an address without it is abstract.  Shims of
    containerd 1.5 and newer print ``unix:///run/containerd/s/<hash>``; 1.4
    shims printed a bare ``/containerd-shim/<hash>.sock`` that lives in the
    abstract namespace.
    """
    if address.startswith(UNIX_SCHEME):
        return address_to_path(address)
    if address.startswith(("@", ABSTRACT_PREFIX)):
        return address_to_path(address)
    if not address:
        raise errdefs.InvalidArgument("shim address is empty")
    return ABSTRACT_PREFIX + address


def is_abstract(path: str) -> bool:
    return path.startswith(ABSTRACT_PREFIX)
