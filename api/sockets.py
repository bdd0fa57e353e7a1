"""Unix socket paths for servers: replace a stale socket, never a live one.

Shared by the gRPC harness and the ttrpc server, so it imports no RPC library.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat

log = logging.getLogger(__name__)


class AddressInUse(OSError):
    """Another live server already answers on the socket."""


def remove_stale_socket(path: str) -> None:
    """Remove ``path`` if it is a socket that refuses connections (a crashed predecessor).

    Raises AddressInUse when ``path`` is not a socket, or when something
    accepts on it — or may (a timeout or a permission error is not proof
    that nobody is there, so such a socket is left alone).
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise AddressInUse(f"{path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            log.info("removed stale socket %s", path)
            return
        except OSError as e:
            raise AddressInUse(f"{path}: cannot tell whether a process serves it: {e}") from None
    raise AddressInUse(f"{path}: another process is serving on this socket")


def prepare_socket(path: str, dir_mode: int = 0o711) -> None:
    """Create the socket's directory and replace a stale socket (never a live one)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=dir_mode, exist_ok=True)
    remove_stale_socket(path)
